"""Each check can fail: break a copy of terraform/ in one place and the check must see it."""

import shutil
from pathlib import Path

import pytest

import invariants as inv
import structure as st
from tfload import TERRAFORM, Tree

# (file under terraform/, text to replace, replacement, check that must then report a problem)
MUTATIONS = [
    ("modules/platform/services.tf", "task_role_statements = []",
     'task_role_statements = [{ sid = "X", actions = ["sqs:SendMessage"], resources = [module.queue.queue_arn] }]',
     inv.check_service_permission_matrix),
    ("modules/platform/services.tf", 'actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]',
     'actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]',
     inv.check_service_permission_matrix),
    ("modules/platform/services.tf", "resources = [module.queue.dlq_arn]",
     'resources = [module.queue.dlq_arn, "*"]',
     inv.check_service_permission_matrix),
    ("modules/service/iam.tf", '"xray:GetSamplingStatisticSummaries"]',
     '"xray:GetSamplingStatisticSummaries", "sqs:DeleteMessage"]',
     inv.check_service_module_task_role),
    ("modules/service/iam.tf", 'actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]',
     'actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject"]',
     inv.check_execution_roles),
    ("modules/service/iam.tf", 'resources = ["${aws_cloudwatch_log_group.app.arn}:*"]',
     'resources = ["*"]',
     inv.check_execution_roles),
    ("modules/migration/iam.tf", 'variable = "kms:ViaService"', 'variable = "aws:SourceAccount"',
     inv.check_execution_roles),
    ("modules/platform/services.tf", 'ORDER_GRPC_AUTH_TOKEN = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }',
     'ORDER_GRPC_AUTH_TOKEN = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }\n    DATABASE_URL = { secret_arn = module.database.login_secret_arns["grpc"], json_key = "url" }',
     inv.check_service_secrets),
    ("modules/platform/data.tf", "order-projector = module.projector.security_group_id",
     "order-projector = module.projector.security_group_id\n    order-worker = module.worker.security_group_id",
     inv.check_service_secrets),
    ("modules/github_oidc/iam.tf", 'actions   = ["ecs:UpdateService", "ecs:DescribeServices"]',
     'actions   = ["ecs:UpdateService", "ecs:DescribeServices", "ecs:DeleteService"]\n    resources = ["*"]\n  }\n  statement {\n    actions = ["ecs:UpdateService"]',
     inv.check_ci_role),
    ("modules/platform/cicd.tf", "    module.migration.task_role_arn,\n",
     "    module.migration.task_role_arn,\n    module.database.monitoring_role_arn,\n",
     inv.check_ci_role),
    ("modules/queue/main.tf", '  redrive_policy = jsonencode({\n    deadLetterTargetArn = aws_sqs_queue.dlq.arn\n    maxReceiveCount     = var.max_receive_count\n  })\n', "",
     inv.check_queues_have_dlq),
    ("modules/database/main.tf", "publicly_accessible    = false", "publicly_accessible    = true",
     inv.check_database),
    ("modules/database/main.tf", "storage_encrypted     = true", "storage_encrypted     = false",
     inv.check_database),
    ("environments/prod/main.tf", "deletion_protection         = true", "deletion_protection         = false",
     inv.check_database),
    ("modules/service/logs.tf", "retention_in_days = var.log_retention_days\n", "",
     inv.check_log_groups_have_retention),
    ("modules/monitoring/alarms.tf", "alarm_name          = \"${var.name_prefix}-dlq-nonempty\"",
     "alarm_name          = \"${var.name_prefix}-dlq-not-empty\"",
     inv.check_reference_alarms),
    ("modules/monitoring/alarms.tf",
     'threshold           = var.rds_cpu_threshold\n  treat_missing_data  = "missing"\n  alarm_actions       = local.alarm_topic',
     'threshold           = var.rds_cpu_threshold\n  treat_missing_data  = "missing"\n  alarm_actions       = []',
     inv.check_alarms_notify_sns),
    ("modules/scaling/worker.tf", "alarm_actions       = [aws_appautoscaling_policy.worker_scale_in.arn, var.alarm_topic_arn]",
     "alarm_actions       = [aws_appautoscaling_policy.worker_scale_in.arn]",
     inv.check_alarms_notify_sns),
    ("modules/scaling/worker.tf", "  evaluation_periods  = 5\n", "  evaluation_periods  = 3\n",
     inv.check_scaling),
    ("modules/monitoring/metric_filters.tf", 'pattern        = "{ $.level = \\"ERROR\\" }"', 'pattern        = "ERROR"',
     inv.check_events_and_filters),
    ("modules/monitoring/events.tf", 'lastStatus    = ["STOPPED"]', 'lastStatus    = ["RUNNING"]',
     inv.check_events_and_filters),
    ("modules/load_balancer/main.tf", 'matcher             = "0"', 'matcher             = "200"',
     inv.check_load_balancer),
    ("modules/load_balancer/variables_optional.tf", 'default     = "/AWS.ALB/healthcheck"',
     'default     = "/grpc.health.v1.Health/Check"',
     inv.check_load_balancer),
    ("modules/platform/variables_optional.tf",
     "default     = true\n\n  validation {\n    condition     = var.alb_internal",
     "default     = false\n\n  validation {\n    condition     = var.alb_internal",
     inv.check_load_balancer),
    ("environments/prod/variables_optional.tf",
     'description = "Networks allowed to call the API (the callers\' VPCs or on-premises ranges)."\n  type        = list(string)\n  default     = []',
     'description = "Networks allowed to call the API (the callers\' VPCs or on-premises ranges)."\n  type        = list(string)\n  default     = ["0.0.0.0/0"]',
     inv.check_load_balancer),
    ("modules/github_oidc/iam.tf", 'variable = "ecs:CreateAction"', 'variable = "aws:RequestedRegion"',
     inv.check_ci_role),
    ("modules/github_oidc/iam.tf", 'actions   = ["ecs:TagResource"]', 'actions   = ["ecs:DescribeTaskDefinition"]',
     inv.check_ci_role),
    ("modules/service/main.tf", "  depends_on = [var.load_balancer]\n", "",
     inv.check_service_waits_for_listeners),
    ("modules/database/secrets.tf", "sslmode=verify-full", "sslmode=require",
     inv.check_database_tls),
    ("modules/database/replica.tf", "  publicly_accessible    = false\n", "  publicly_accessible    = true\n",
     inv.check_database),
    ("modules/database/replica.tf", "  vpc_security_group_ids = [aws_security_group.db.id]\n", "",
     inv.check_database),
    ("modules/migration/main.tf", '{ name = "PGSSLMODE", value = "verify-full" }', '{ name = "PGSSLMODE", value = "require" }',
     inv.check_database_tls),
    ("modules/database/parameters.tf", 'name  = "log_statement"\n    value = "ddl"', 'name  = "log_statement"\n    value = "all"',
     inv.check_no_password_in_database_log),
    ("environments/prod/main.tf", "db_backup_retention_days    = 35", "db_backup_retention_days    = 14",
     inv.check_disaster_recovery),
    ("modules/ecr/main.tf", 'image_tag_mutability = "IMMUTABLE"', 'image_tag_mutability = "MUTABLE"',
     inv.check_ecr),
    ("modules/ecr/pull_through_cache.tf", '"${var.name_prefix}/ecr-public"', '"ecr-public"',
     inv.check_ecr),
    ("modules/network/variables_optional.tf", '"secretsmanager", ', "",
     inv.check_network),
    ("modules/migration/main.tf", 'command   = ["migrate"]', 'command   = ["serve"]',
     inv.check_migration_task),
    ("modules/service/otel-collector.yaml.tftpl", "  awsxray:\n    indexed_attributes: [correlation_id, order_id]\n", "",
     inv.check_collector_sidecar),
    ("modules/queue/variables_optional.tf", 'description = "Receives after which SQS moves a message to the DLQ."\n', "",
     st.check_variable_files),
    ("modules/kms/versions.tf", 'version = ">= 5.100.0, < 6.0.0"', 'version = ">= 5.100.0"',
     st.check_provider_pins),
    ("environments/dev/versions.tf", 'version = "= 5.100.0"', 'version = "~> 5.100"',
     st.check_provider_pins),
    ("modules/platform/data.tf", "max_receive_count = var.max_receive_count",
     "max_receive_count = var.max_receive_count\n  receive_count     = 3",
     st.check_module_arguments),
    ("modules/platform/edge.tf", "name_prefix              = local.name_prefix\n", "",
     st.check_module_arguments),
    ("modules/platform/services.tf", "ORDERS_DLQ_URL        = module.queue.dlq_url", "ORDERS_DLQ_URL        = module.queue.dlq_uri",
     st.check_references),
    ("modules/service/main.tf", "var.stop_timeout_seconds", "var.stop_timeout",
     st.check_references),
    ("environments/prod/backend.tf", "use_lockfile = true", "use_lockfile = false",
     st.check_roots),
    ("environments/prod/providers.tf", '      service     = "platform"\n', "",
     st.check_roots),
]


@pytest.mark.parametrize(
    "rel,old,new,check", MUTATIONS, ids=[f"{m[3].__name__}:{m[0]}:{i}" for i, m in enumerate(MUTATIONS)]
)
def test_check_detects_the_mutation(tmp_path: Path, rel, old, new, check):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform"))
    target = copy / rel
    text = target.read_text()
    assert text.count(old) == 1, f"mutation anchor not found exactly once in {rel}: {old!r}"
    target.write_text(text.replace(old, new))

    problems = check(Tree(copy))
    assert problems, f"{check.__name__} did not notice the change in {rel}"
