# The migration job: a one-off ECS task (never a service) that CI runs before every rollout and
# waits for. Two containers, in order:
#   1. dbinit  - bootstrap-roles.sh (image order-dbinit) connects as the RDS master user and
#                creates the group roles and the per-service login users (idempotent);
#   2. migrate - `order-grpc migrate` as orders_migrator (sessions run as orders_owner);
#                starts only when dbinit exited 0, and its exit code is the task's verdict.
# CI first runs the same task with the migrate container's command overridden to
# `migrate --dry-run` (prints what would be applied, applies nothing), then, after approval in
# prod, runs it as defined.
#
# TLS to the database is verify-full for both: the images carry the RDS CA bundle.

data "aws_region" "current" {}

locals {
  family = "${var.name_prefix}-migrate"
  # IAM role names are unique per account, not per region
  role_prefix = "${coalesce(var.global_name_prefix, var.name_prefix)}-migrate"

  log_options = {
    awslogs-group  = aws_cloudwatch_log_group.this.name
    awslogs-region = data.aws_region.current.name
  }

  containers = [
    {
      name      = "dbinit"
      image     = var.dbinit_image
      essential = false
      environment = [
        { name = "PGHOST", value = var.db_address },
        { name = "PGPORT", value = tostring(var.db_port) },
        { name = "PGDATABASE", value = var.db_name },
        { name = "PGSSLMODE", value = "verify-full" },
        { name = "PGSSLROOTCERT", value = var.rds_ca_bundle_path },
      ]
      secrets = [
        { name = "PGUSER", valueFrom = "${var.master_secret_arn}:username::" },
        { name = "PGPASSWORD", valueFrom = "${var.master_secret_arn}:password::" },
        { name = "MIGRATOR_DB_PASSWORD", valueFrom = "${var.login_secret_arns["migrator"]}:password::" },
        { name = "GRPC_DB_PASSWORD", valueFrom = "${var.login_secret_arns["grpc"]}:password::" },
        { name = "PROJECTOR_DB_PASSWORD", valueFrom = "${var.login_secret_arns["projector"]}:password::" },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options   = merge(local.log_options, { awslogs-stream-prefix = "dbinit" })
      }
      readonlyRootFilesystem = true
    },
    {
      name      = "migrate"
      image     = var.migrate_image
      essential = true
      command   = ["migrate"]
      dependsOn = [{ containerName = "dbinit", condition = "SUCCESS" }]
      environment = [
        { name = "LOG_FORMAT", value = "json" },
        { name = "RUST_LOG", value = "info" },
        { name = "ORDER_DB_CA_FILE", value = var.rds_ca_bundle_path },
      ]
      secrets = [
        { name = "DATABASE_URL", valueFrom = "${var.login_secret_arns["migrator"]}:url::" },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options   = merge(local.log_options, { awslogs-stream-prefix = "migrate" })
      }
      readonlyRootFilesystem = true
    },
  ]
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.containers)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  tags = merge(var.tags, { service = "migrate" })
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Migration output matters for days, not a year (var.log_retention_days); the applied migrations are recorded in the database itself.
  name              = "/ecs/${var.name_prefix}/migrate"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { service = "migrate" })
}
