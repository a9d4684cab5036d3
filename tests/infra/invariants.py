"""The deployment's invariants, as functions of a terraform/ tree returning a list of problems.

tests/infra/test_*.py run them against the real tree (expecting no problem) and against mutated
copies (expecting the problem to be found), so each check is known to be able to fail.
"""

from __future__ import annotations

import re

from tfload import Block, Tree, policy_statements, refs

REFERENCE_ALARMS = [
    "api-error-spike",
    "worker-failed",
    "scaleout-sqs-backlog-high",
    "scalein-sqs-backlog-empty",
    "queue-backlog-high-sustained",
    "dlq-nonempty",
    "alb-5xx",
    "tg-5xx",
    "alb-latency-p95",
    "rds-cpu-high",
    "rds-free-storage-low",
    "projector-lag",
]

ALARM_PREFIX = "${var.name_prefix}-"
# names unique per account or worldwide (IAM roles, dashboards, buckets); see check_account_wide_names
GLOBAL_PREFIX = "${coalesce(var.global_name_prefix, var.name_prefix)}"

# --- IAM -------------------------------------------------------------------------------------


def _service_calls(tree: Tree) -> dict[str, Block]:
    calls = {b.body.get("service_name"): b for _, b in tree.callers("modules/service")}
    return calls


def _permissions(call: Block) -> set[tuple[str, str]]:
    """(action, resource) pairs a service module instance grants its task role."""
    pairs = set()
    for st in call.body.get("task_role_statements", []) or []:
        resources = st.get("resources")
        resources = resources if isinstance(resources, list) else [resources]
        for action in st.get("actions", []):
            for r in resources:
                pairs.add((action, r))
    return pairs


QUEUE = "${module.queue.queue_arn}"
DLQ = "${module.queue.dlq_arn}"

EXPECTED_TASK_PERMISSIONS = {
    "order-grpc": set(),
    "order-projector": {("sqs:SendMessage", QUEUE), ("sqs:GetQueueAttributes", QUEUE)},
    "order-worker": {
        ("sqs:ReceiveMessage", QUEUE),
        ("sqs:DeleteMessage", QUEUE),
        ("sqs:ChangeMessageVisibility", QUEUE),
        ("sqs:GetQueueAttributes", QUEUE),
        # A message at its last receive during a provider outage is sent again.
        ("sqs:SendMessage", QUEUE),
        ("sqs:SendMessage", DLQ),
        # Readiness checks the dead-letter queue answers too.
        ("sqs:GetQueueAttributes", DLQ),
    },
}


def check_service_permission_matrix(tree: Tree) -> list[str]:
    problems = []
    calls = _service_calls(tree)
    if set(calls) != set(EXPECTED_TASK_PERMISSIONS):
        problems.append(f"service module instances are {sorted(calls)}, expected {sorted(EXPECTED_TASK_PERMISSIONS)}")
    for service, expected in EXPECTED_TASK_PERMISSIONS.items():
        if service not in calls:
            continue
        got = _permissions(calls[service])
        if got != expected:
            problems.append(
                f"{service}: task role grants {sorted(got)}, expected exactly {sorted(expected)}"
            )
        if service == "order-grpc" and "sqs:" in calls[service].text():
            problems.append("order-grpc: its module call mentions an sqs: permission")
    return problems


OTEL_TASK_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
}


def check_service_module_task_role(tree: Tree) -> list[str]:
    """The service module adds nothing to the task role but var.task_role_statements and the
    collector's X-Ray / metrics-log permissions."""
    problems = []
    doc = tree["modules/service"].get("data", "aws_iam_policy_document", "task")
    for st in policy_statements(doc):
        if st.dynamic_for_each == "${var.task_role_statements}":
            continue
        extra = set(st.actions) - OTEL_TASK_ACTIONS
        if extra:
            problems.append(f"service task role statement {st.sid} grants {sorted(extra)} to every service")
        if any(a.startswith("sqs:") for a in st.actions):
            problems.append(f"service task role statement {st.sid} grants SQS to every service")
    return problems


EXECUTION_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
}


def check_execution_roles(tree: Tree) -> list[str]:
    """Execution roles: ECR pull of their own images, their own log group, their own secrets."""
    problems = []
    for module, log_group in (("modules/service", "aws_cloudwatch_log_group.app"), ("modules/migration", "aws_cloudwatch_log_group.this")):
        doc = tree[module].get("data", "aws_iam_policy_document", "execution")
        for st in policy_statements(doc):
            where = f"{module} execution role, statement {st.sid}"
            extra = set(st.actions) - EXECUTION_ACTIONS
            if extra:
                problems.append(f"{where}: grants {sorted(extra)}")
            res = refs(st.resources)
            if st.resources == ["*"] and st.actions != ["ecr:GetAuthorizationToken"]:
                problems.append(f"{where}: {st.actions} on every resource")
            if any(a.startswith("ecr:") and a != "ecr:GetAuthorizationToken" for a in st.actions):
                if "ecr_repository_arns" not in res and "otel_collector.repository_arn" not in res and "statement.value" not in res:
                    problems.append(f"{where}: ECR pull not limited to the service's repositories ({res})")
            if any(a.startswith("logs:") for a in st.actions) and log_group not in res:
                problems.append(f"{where}: logs not limited to its own log group ({res})")
            if "secretsmanager:GetSecretValue" in st.actions:
                if module == "modules/service" and "secret_arns" not in (res + (st.dynamic_for_each or "")):
                    problems.append(f"{where}: secrets not limited to var.secrets ({res})")
                if module == "modules/migration" and "master_secret_arn" not in res:
                    problems.append(f"{where}: secrets not limited to the database secrets ({res})")
            if "kms:Decrypt" in st.actions and "kms:ViaService" not in refs(st.conditions):
                problems.append(f"{where}: kms:Decrypt without a kms:ViaService condition")
    return problems


def check_service_secrets(tree: Tree) -> list[str]:
    """Each service reads only its own secrets; the worker has no database access at all."""
    problems = []
    calls = _service_calls(tree)
    expected_db_secret = {"order-grpc": "grpc", "order-projector": "projector"}
    for service, call in calls.items():
        secrets = call.body.get("secrets", {}) or {}
        text = refs(secrets)
        for key in ("migrator", "grpc", "projector"):
            uses = f'login_secret_arns[\\"{key}\\"]' in text
            if uses and expected_db_secret.get(service) != key:
                problems.append(f"{service} reads the {key} database login secret")
        if service in expected_db_secret and "DATABASE_URL" not in secrets:
            problems.append(f"{service} gets no DATABASE_URL")
        if service == "order-worker":
            if "DATABASE_URL" in secrets or "DATABASE_URL" in refs(call.body.get("environment", {})):
                problems.append("order-worker gets a DATABASE_URL")
            if "5432" in refs(call.body.get("egress_rules")) or "database_egress" in refs(call.body.get("egress_rules")):
                problems.append("order-worker may open connections to the database")
    db_calls = tree.callers("modules/database")
    for _, db in db_calls:
        clients = db.body.get("client_security_group_ids", {})
        if any("worker" in k or "worker" in refs(v) for k, v in clients.items()):
            problems.append("the database security group admits order-worker")
    return problems


def check_no_wildcard_allows(tree: Tree) -> list[str]:
    problems = []
    for rel, doc in tree.all_blocks("data", "aws_iam_policy_document"):
        for st in policy_statements(doc):
            if st.effect == "Deny":
                continue
            for a in st.actions:
                if a == "*" or a.endswith(":*"):
                    problems.append(f"{rel} {doc.name}/{st.sid}: allows {a}")
    return problems


CI_STAR_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:RegisterTaskDefinition",
}


def check_ci_role(tree: Tree) -> list[str]:
    """The GitHub OIDC role pushes images, runs the migration, rolls the three services."""
    problems = []
    d = tree["modules/github_oidc"]
    assume = d.get("data", "aws_iam_policy_document", "assume")
    if ":sub" not in assume.text() or "environment:" not in assume.text():
        problems.append("deploy role trust is not limited to one repository environment (sub claim)")
    deploy = policy_statements(d.get("data", "aws_iam_policy_document", "deploy"))
    # ecs-deploy.sh registers revisions with the previous revision's tags: tag-on-create
    if not any("ecs:TagResource" in st.actions for st in deploy):
        problems.append("deploy role cannot tag the task definitions it registers (ecs:TagResource)")
    for st in deploy:
        where = f"deploy role statement {st.sid}"
        if st.resources == ["*"] and not set(st.actions) <= CI_STAR_ACTIONS:
            problems.append(f"{where}: {sorted(set(st.actions) - CI_STAR_ACTIONS)} on every resource")
        if "iam:PassRole" in st.actions:
            if st.resources != "${var.pass_role_arns}":
                problems.append(f"{where}: PassRole on {st.resources}, not exactly var.pass_role_arns")
            if "iam:PassedToService" not in refs(st.conditions):
                problems.append(f"{where}: PassRole without iam:PassedToService")
        if "ecs:TagResource" in st.actions:
            cond = refs(st.conditions)
            if "ecs:CreateAction" not in cond or "RegisterTaskDefinition" not in cond:
                problems.append(f"{where}: ecs:TagResource without the ecs:CreateAction = RegisterTaskDefinition condition")
            if "task_definition_families" not in refs(st.resources):
                problems.append(f"{where}: ecs:TagResource not limited to the project's task definition families")
        if "ecs:RunTask" in st.actions and "migration_task_family" not in refs(st.resources):
            problems.append(f"{where}: RunTask not limited to the migration task family")
        if "ecs:UpdateService" in st.actions and st.resources != "${var.service_arns}":
            problems.append(f"{where}: UpdateService not limited to the three services")
        if any(a.startswith(("iam:Create", "iam:Put", "iam:Attach", "sqs:", "rds:", "secretsmanager:")) for a in st.actions):
            problems.append(f"{where}: deploy role may {st.actions}")
    for _, call in tree.callers("modules/github_oidc"):
        roles = call.body.get("pass_role_arns", [])
        expected = {
            f"${{module.{m}.{r}}}"
            for m in ("grpc", "projector", "worker", "migration")
            for r in ("execution_role_arn", "task_role_arn")
        }
        if set(roles) != expected:
            problems.append(f"deploy role may pass {sorted(roles)}, expected exactly {sorted(expected)}")
    return problems


# --- data stores -----------------------------------------------------------------------------


def check_queues_have_dlq(tree: Tree) -> list[str]:
    problems = []
    queues = list(tree.all_blocks("resource", "aws_sqs_queue"))
    if not queues:
        problems.append("no SQS queue found")
    dlq_targets = set()
    for rel, q in queues:
        m = re.search(r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.([A-Za-z0-9_]+)\.arn", q.body.get("redrive_policy", "") or "")
        if m:
            dlq_targets.add((rel, m.group(1)))
    for rel, q in queues:
        redrive = q.body.get("redrive_policy")
        if (rel, q.name) in dlq_targets:
            continue  # it is a dead-letter queue
        if not redrive or "deadLetterTargetArn" not in redrive or "maxReceiveCount" not in redrive:
            problems.append(f"{rel}: queue {q.name} has no redrive policy to a DLQ")
    for rel, q in queues:
        if not (q.body.get("sqs_managed_sse_enabled") is True or q.body.get("kms_master_key_id")):
            problems.append(f"{rel}: queue {q.name} is not encrypted")
        if q.body.get("fifo_queue") is not True:
            problems.append(f"{rel}: queue {q.name} is not FIFO")
        if q.body.get("content_based_deduplication") is not False:
            problems.append(f"{rel}: queue {q.name} must not use content-based deduplication (MessageDeduplicationId = event id)")
    qv = tree["modules/queue"].variables()
    # Bounded: a poison message must reach the DLQ, and a short outage must not send live
    # messages there (the worker backs off 2 s doubling per receive).
    if not 5 <= (qv["max_receive_count"].body.get("default") or 0) <= 20:
        problems.append("max_receive_count default is not between 5 and 20")
    return problems


def check_database(tree: Tree) -> list[str]:
    problems = []
    dbs = list(tree.all_blocks("resource", "aws_db_instance"))
    if not dbs:
        problems.append("no RDS instance found")
    for rel, db in dbs:
        b = db.body
        if b.get("publicly_accessible") is not False:
            problems.append(f"{rel}: RDS {db.name} may be publicly accessible")
        if b.get("storage_encrypted") is not True:
            problems.append(f"{rel}: RDS {db.name} storage not encrypted")
        # The key is chosen where RDS takes one: a new primary names the environment's key; a
        # restored one keeps its backups' key (RestoreDBInstanceToPointInTime has no KmsKeyId) and
        # a replica its primary's, so naming a key there replaces the instance on the next plan.
        key = b.get("kms_key_id")
        if "replicate_source_db" in b:
            if key is not None:
                problems.append(f"{rel}: RDS replica {db.name} names a KMS key (a replica in its primary's region takes the primary's)")
        elif "restore_to_point_in_time" in db.text():
            if "var.restore == null" not in str(key) or "var.kms_key_arn" not in str(key) or "null}" not in str(key):
                problems.append(f"{rel}: RDS {db.name} names a KMS key when restored (the backups' key stays; the next plan would replace it)")
        elif not key:
            problems.append(f"{rel}: RDS {db.name} storage not encrypted with the KMS key")
        if b.get("deletion_protection") != "${var.deletion_protection}":
            problems.append(f"{rel}: RDS {db.name} deletion protection not driven by var.deletion_protection")
        if "replicate_source_db" in b:
            # A read replica: its users, passwords and backups are the primary's.
            if "${aws_db_instance.this." not in str(b.get("replicate_source_db")):
                problems.append(f"{rel}: RDS replica {db.name} does not replicate the module's primary")
            if b.get("vpc_security_group_ids") != ["${aws_security_group.db.id}"]:
                problems.append(f"{rel}: RDS replica {db.name} not behind the database security group")
        else:
            if b.get("manage_master_user_password") is not True:
                problems.append(f"{rel}: RDS {db.name} master password not managed in Secrets Manager")
            if not b.get("backup_retention_period"):
                problems.append(f"{rel}: RDS {db.name} has no automated backups")
        if b.get("performance_insights_enabled") is not True:
            problems.append(f"{rel}: RDS {db.name} without Performance Insights")
    params = tree["modules/database"].get("resource", "aws_db_parameter_group", "this").text()
    for p in ("statement_timeout", "idle_in_transaction_session_timeout", "rds.force_ssl"):
        if p not in params:
            problems.append(f"database parameter group does not set {p}")
    # isolated subnets only
    for rel, call in tree.callers("modules/database"):
        if call.body.get("subnet_ids") != "${module.network.isolated_subnet_ids}":
            problems.append(f"{rel}: database not placed in the isolated subnets")
    # deletion protection: on by default, and on in every environment but dev
    plat = tree["modules/platform"].variables()
    if plat["deletion_protection"].body.get("default") is not True:
        problems.append("platform: deletion_protection does not default to true")
    for rel, d in tree.roots().items():
        for call in d.of("module"):
            if "deletion_protection" in call.body and call.body["deletion_protection"] is not True and not rel.endswith("/dev"):
                problems.append(f"{rel}: deletion protection off outside dev")
    return problems


# --- observability ---------------------------------------------------------------------------


def check_log_groups_have_retention(tree: Tree) -> list[str]:
    problems = []
    groups = list(tree.all_blocks("resource", "aws_cloudwatch_log_group"))
    if not groups:
        problems.append("no log group found")
    for rel, g in groups:
        if g.body.get("retention_in_days") in (None, 0):
            problems.append(f"{rel}: log group {g.name} has no retention")
        if not g.body.get("kms_key_id"):
            problems.append(f"{rel}: log group {g.name} not encrypted with the KMS key")
    # RDS exports and Container Insights would create their own log groups without retention
    if "/aws/rds/instance/" not in tree["modules/database"].source_text():
        problems.append("RDS export log groups are not created with retention")
    if "/aws/ecs/containerinsights/" not in tree["modules/cluster"].source_text():
        problems.append("the Container Insights log group is not created with retention")
    return problems


def _resolve_local(d, value):
    m = re.fullmatch(r"\$\{local\.([A-Za-z0-9_]+)\}", value) if isinstance(value, str) else None
    if m and m.group(1) in d.locals:
        return d.locals[m.group(1)]
    return value


def check_alarms_notify_sns(tree: Tree) -> list[str]:
    problems = []
    alarms = list(tree.all_blocks("resource", "aws_cloudwatch_metric_alarm"))
    if not alarms:
        problems.append("no alarm found")
    modules_with_topic_var = set()
    for rel, a in alarms:
        actions = refs(_resolve_local(tree[rel], a.body.get("alarm_actions")))
        if "aws_sns_topic.alerts.arn" in actions:
            continue
        if "var.alarm_topic_arn" in actions:
            modules_with_topic_var.add(rel)
            continue
        problems.append(f"{rel}: alarm {a.name} does not notify the alerts topic")
    for module in modules_with_topic_var:
        for rel, call in tree.callers(module):
            if call.body.get("alarm_topic_arn") != "${module.monitoring.alerts_topic_arn}":
                problems.append(f"{rel}: module {call.name} gets alarm_topic_arn={call.body.get('alarm_topic_arn')}")
    topic = tree["modules/monitoring"].get("resource", "aws_sns_topic", "alerts")
    if topic.body.get("name") != "${var.name_prefix}-alerts":
        problems.append(f"alerts topic is named {topic.body.get('name')}, expected <prefix>-alerts")
    return problems


def alarm_names(tree: Tree) -> list[str]:
    return [a.body.get("alarm_name", "") for _, a in tree.all_blocks("resource", "aws_cloudwatch_metric_alarm")]


def check_reference_alarms(tree: Tree) -> list[str]:
    problems = []
    names = alarm_names(tree)
    short = set()
    for n in names:
        if not n.startswith(ALARM_PREFIX):
            problems.append(f"alarm {n} is not named <prefix>-...")
        short.add(n[len(ALARM_PREFIX):])
    for ref in REFERENCE_ALARMS:
        if ref not in short:
            problems.append(f"reference alarm {ref} is missing")
    return problems


def check_dlq_alarm_counts_messages_being_read(tree: Tree) -> list[str]:
    """dlq-nonempty adds the dead letters in flight to the visible ones: reading one (a receive
    hides it for the visibility timeout) must not turn the alarm OK while it is still there."""
    alarm = tree["modules/monitoring"].get("resource", "aws_cloudwatch_metric_alarm", "dlq_nonempty").body
    read = set()
    for query in alarm.get("metric_query") or []:
        for metric in query.get("metric") or []:
            if metric.get("dimensions", {}).get("QueueName") == "${var.dlq_name}":
                read.add(metric.get("metric_name"))
    if not {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"} <= read:
        return ["dlq-nonempty does not count both the visible and the in-flight dead letters"]
    return []


def check_scaling(tree: Tree) -> list[str]:
    problems = []
    s = tree["modules/scaling"]
    v = s.variables()
    if (v["worker_min_capacity"].body.get("default"), v["worker_max_capacity"].body.get("default")) != (1, 5):
        problems.append("worker capacity defaults are not min 1 / max 5")
    out = s.get("resource", "aws_cloudwatch_metric_alarm", "scaleout_sqs_backlog_high").body
    if (out.get("comparison_operator"), out.get("period"), out.get("evaluation_periods"), out.get("metric_name")) != (
        "GreaterThanThreshold", 60, 2, "ApproximateNumberOfMessagesVisible"
    ) or v["scale_out_backlog_threshold"].body.get("default") != 10:
        problems.append("scale-out alarm is not visible > 10 for 2 x 60 s")
    if "worker_scale_out" not in refs(out.get("alarm_actions")):
        problems.append("scale-out alarm does not trigger the scale-out policy")
    inn = s.get("resource", "aws_cloudwatch_metric_alarm", "scalein_sqs_backlog_empty").body
    if (inn.get("comparison_operator"), inn.get("threshold"), inn.get("period"), inn.get("evaluation_periods")) != (
        "LessThanOrEqualToThreshold", 0, 60, 5
    ):
        problems.append("scale-in alarm is not visible <= 0 for 5 x 60 s")
    if "worker_scale_in" not in refs(inn.get("alarm_actions")):
        problems.append("scale-in alarm does not trigger the scale-in policy")
    if "ECSServiceAverageCPUUtilization" not in s.get("resource", "aws_appautoscaling_policy", "grpc_cpu").text():
        problems.append("order-grpc does not track CPU")
    return problems


def check_events_and_filters(tree: Tree) -> list[str]:
    problems = []
    m = tree["modules/monitoring"]
    rules = {b.name: b.text() for b in m.of("resource", "aws_cloudwatch_event_rule")}
    if not any("ECS Task State Change" in t and "STOPPED" in t for t in rules.values()):
        problems.append("no EventBridge rule for ECS tasks STOPPED")
    if not any("ECS Service Action" in t and "ECS Deployment State Change" in t for t in rules.values()):
        problems.append("no EventBridge rule for ECS service / deployment events")
    for t in m.of("resource", "aws_cloudwatch_event_target"):
        if t.body.get("arn") != "${aws_sns_topic.alerts.arn}":
            problems.append(f"EventBridge target {t.name} does not publish to the alerts topic")
    targeted = {re.sub(r"^\$\{aws_cloudwatch_event_rule\.([A-Za-z0-9_]+)\.name\}$", r"\1", t.body.get("rule", "")) for t in m.of("resource", "aws_cloudwatch_event_target")}
    for name in rules:
        if name not in targeted:
            problems.append(f"EventBridge rule {name} has no target")
    filters = {b.body["metric_transformation"][0]["name"] if isinstance(b.body["metric_transformation"], list) else b.body["metric_transformation"]["name"]: b.body for b in m.of("resource", "aws_cloudwatch_log_metric_filter")}
    api = filters.get("ApiErrorCount")
    if not api or api.get("pattern") != '{ $.level = "ERROR" }' or api.get("log_group_name") != "${var.grpc_log_group_name}":
        problems.append("ApiErrorCount is not { $.level = \"ERROR\" } on the order-grpc log group")
    worker = filters.get("WorkerFailedCount")
    if not worker or "FAILED" not in worker.get("pattern", "") or worker.get("log_group_name") != "${var.worker_log_group_name}":
        problems.append("WorkerFailedCount does not match FAILED on the order-worker log group")
    dash = m.get("resource", "aws_cloudwatch_dashboard", "this")
    text = m.source_text()
    for metric in (
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible", "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count", "TargetResponseTime", "RequestCount", "CPUUtilization", "FreeStorageSpace",
        "DesiredTaskCount", "RunningTaskCount", "NumberOfMessagesSent", "order_projector_lag_seconds",
    ):
        if metric not in text:
            problems.append(f"dashboard has no {metric} panel")
    if dash.body.get("dashboard_name") != GLOBAL_PREFIX + "-dashboard":
        problems.append("dashboard is not named <prefix>-dashboard")
    return problems


# --- edge, images, tasks ---------------------------------------------------------------------


ALB_HEALTH_PATH = "/AWS.ALB/healthcheck"  # answered by order-grpc/src/alb_health.rs


def check_load_balancer(tree: Tree) -> list[str]:
    """gRPC target groups probing the readiness path (grpc-status 14 while not ready: the ALB
    judges the status code only), HTTPS listeners only, egress only to the tasks, internal and
    closed to undeclared callers by default."""
    problems = []
    lb = tree["modules/load_balancer"]
    v = lb.variables()
    tg = lb.get("resource", "aws_lb_target_group", "grpc").body
    hc = tg.get("health_check")
    hc = hc[0] if isinstance(hc, list) else hc
    if tg.get("protocol_version") != "GRPC":
        problems.append("target group protocol_version is not GRPC")
    path = hc.get("path")
    if path == "${var.health_check_path}":
        path = v["health_check_path"].body.get("default")
    if path != ALB_HEALTH_PATH or hc.get("matcher") != "0":
        problems.append(f"target group health check is {path} with matcher {hc.get('matcher')}, expected {ALB_HEALTH_PATH} with 0 (grpc.health.v1 answers NOT_SERVING with grpc-status 0)")
    listeners = lb.of("resource", "aws_lb_listener")
    if not listeners or any(l.body.get("protocol") != "HTTPS" or l.body.get("certificate_arn") != "${var.certificate_arn}" for l in listeners):
        problems.append("every ALB listener must be HTTPS with the certificate input")
    egress = lb.of("resource", "aws_vpc_security_group_egress_rule")
    if len(egress) != 1 or egress[0].body.get("referenced_security_group_id") != "${var.target_security_group_id}":
        problems.append("ALB egress is not limited to the order-grpc tasks")
    if v["internal"].body.get("default") is not True:
        problems.append("the load balancer module is not internal by default")
    for rel, d in tree.dirs.items():
        for name, var in d.variables().items():
            if "allowed_cidrs" in name and "0.0.0.0/0" in refs(var.body.get("default")):
                problems.append(f"{rel}: {name} admits 0.0.0.0/0 by default")
    plat = tree["modules/platform"].variables()
    if plat["alb_internal"].body.get("default") is not True:
        problems.append("platform: alb_internal does not default to true")
    if "aws_wafv2_web_acl_association" not in lb.source_text() or "var.internal ?" not in lb.source_text():
        problems.append("an internet-facing load balancer gets no WAF web ACL")
    return problems


def check_service_waits_for_listeners(tree: Tree) -> list[str]:
    """The ECS service is created only after the listeners that use its target group: a target
    group without a listener is refused ("does not have an associated load balancer")."""
    problems = []
    svc = tree["modules/service"].get("resource", "aws_ecs_service", "this").body
    if "var.load_balancer" not in refs(svc.get("depends_on")):
        problems.append("service module: aws_ecs_service does not depend on var.load_balancer (the listeners)")
    for _, call in tree.callers("modules/service"):
        lb = call.body.get("load_balancer")
        if lb is not None and "module.load_balancer.listener_arns" not in refs(lb):
            problems.append(f"{call.body.get('service_name')}: load_balancer without the ALB's listener ARNs")
    return problems


def check_database_tls(tree: Tree) -> list[str]:
    """Every database client verifies the server: URLs say sslmode=verify-full and each client
    is given the RDS CA bundle of its image."""
    problems = []
    secrets = tree["modules/database"].source_text()
    if "sslmode=verify-full" not in secrets or "sslmode=require" in secrets:
        problems.append("database login URLs do not use sslmode=verify-full")
    for service, call in _service_calls(tree).items():
        if service == "order-worker":
            continue
        env = refs(call.body.get("environment")) + refs(tree["modules/platform"].locals.get("database_ca"))
        if "database_ca" not in refs(call.body.get("environment")) or "ORDER_DB_CA_FILE" not in env:
            problems.append(f"{service}: no ORDER_DB_CA_FILE (the RDS bundle) for verify-full")
    mig = tree["modules/migration"].source_text()
    if '"PGSSLMODE", value = "verify-full"' not in mig or "PGSSLROOTCERT" not in mig or "ORDER_DB_CA_FILE" not in mig:
        problems.append("migration task: dbinit without PGSSLMODE=verify-full + PGSSLROOTCERT, or migrate without ORDER_DB_CA_FILE")
    return problems


def check_no_password_in_database_log(tree: Tree) -> list[str]:
    """The exported PostgreSQL log never receives a statement with a password: statement
    logging stays at DDL at most (bootstrap-roles.sh sends SCRAM verifiers, tested in
    tests/infra/test_bootstrap_roles.py), and passwords are stored as SCRAM."""
    problems = []
    params = tree["modules/database"].get("resource", "aws_db_parameter_group", "this").body.get("parameter", [])
    values = {p.get("name"): p.get("value") for p in params}
    if values.get("log_statement") not in ("none", "ddl"):
        problems.append(f"log_statement = {values.get('log_statement')}: more than DDL reaches the exported log")
    if values.get("password_encryption") != "scram-sha-256":
        problems.append("password_encryption is not scram-sha-256")
    return problems


def check_disaster_recovery(tree: Tree) -> list[str]:
    """prod: 35 days of point-in-time restore, backups and images copied to a second region."""
    problems = []
    prod = tree["environments/prod"]
    call = prod.module("platform").body
    if call.get("db_backup_retention_days") != 35:
        problems.append(f"prod keeps {call.get('db_backup_retention_days')} days of backups, expected 35")
    dr_region = prod.variables().get("dr_region")
    if dr_region is None or dr_region.body.get("default") in (None, ""):
        problems.append("prod has no disaster-recovery region by default")
    if call.get("dr_region") != "${var.dr_region}":
        problems.append("prod does not pass dr_region to the platform")
    dr = tree.dirs["modules/disaster_recovery"].source_text() if "modules/disaster_recovery" in tree.dirs else ""
    for needed in ("aws_db_instance_automated_backups_replication", "aws_ecr_replication_configuration"):
        if needed not in dr:
            problems.append(f"disaster_recovery module has no {needed}")
    return problems


def check_ecr(tree: Tree) -> list[str]:
    """Immutable, scanned, expiring repositories; every name (the pull-through cache's prefix,
    unique per account and region, included) carries the environment's prefix."""
    problems = []
    e = tree["modules/ecr"]
    rule = e.get("resource", "aws_ecr_pull_through_cache_rule", "ecr_public").body
    prefix = rule.get("ecr_repository_prefix", "")
    if prefix == "${local.pull_through_prefix}":
        prefix = refs(e.locals.get("pull_through_prefix"))
    elif prefix == "${var.pull_through_prefix}":
        prefix = refs(e.variables()["pull_through_prefix"].body.get("default"))
    if "var.name_prefix" not in prefix:
        problems.append(f"ECR pull-through cache prefix {prefix} is not environment-prefixed (dev and prod collide in one account)")
    for r in e.of("resource", "aws_ecr_repository"):
        if r.body.get("image_tag_mutability") != "IMMUTABLE":
            problems.append(f"ECR {r.name}: tags are mutable")
        if "scan_on_push" not in r.text() or '"scan_on_push": true' not in r.text():
            problems.append(f"ECR {r.name}: no scan on push")
    if len(e.of("resource", "aws_ecr_lifecycle_policy")) < len(e.of("resource", "aws_ecr_repository")):
        problems.append("an ECR repository has no lifecycle policy")
    return problems


def check_network(tree: Tree) -> list[str]:
    problems = []
    n = tree["modules/network"]
    endpoints = n.variables()["interface_endpoints"].body.get("default", [])
    for svc in ("ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager"):
        if svc not in endpoints:
            problems.append(f"no VPC endpoint for {svc}")
    if n.get("resource", "aws_vpc_endpoint", "s3").body.get("vpc_endpoint_type") != "Gateway":
        problems.append("no S3 gateway endpoint")
    for s in n.of("resource", "aws_subnet"):
        if s.body.get("map_public_ip_on_launch") is True:
            problems.append(f"subnet {s.name} hands out public IPs")
    isolated_rt = n.get("resource", "aws_route_table", "isolated")
    if "route" in isolated_rt.body or any("aws_route_table.isolated" in r.text() for r in n.of("resource", "aws_route")):
        problems.append("isolated subnets have a route out")
    if "var.az_count >= 2" not in n.variables()["az_count"].text():
        problems.append("az_count does not require two AZs")
    for rel, svc in tree.all_blocks("resource", "aws_ecs_service"):
        if '"assign_public_ip": false' not in svc.text():
            problems.append(f"{rel}: ECS service {svc.name} may assign public IPs")
    return problems


def check_migration_task(tree: Tree) -> list[str]:
    problems = []
    m = tree["modules/migration"]
    text = m.source_text()
    if 'command   = ["migrate"]' not in text and 'command = ["migrate"]' not in text:
        problems.append("migration task does not run `order-grpc migrate`")
    if 'condition = "SUCCESS"' not in text:
        problems.append("migrate does not wait for the role bootstrap to succeed")
    if m.of("resource", "aws_ecs_service"):
        problems.append("the migration must be a one-off task, not a service")
    for rel, call in tree.callers("modules/migration"):
        if "order-grpc" not in refs(call.body.get("migrate_image")):
            problems.append(f"{rel}: migration does not use the order-grpc image")
    return problems


def check_collector_sidecar(tree: Tree) -> list[str]:
    problems = []
    s = tree["modules/service"]
    cfg = (s.path / "otel-collector.yaml.tftpl").read_text() if (s.path / "otel-collector.yaml.tftpl").exists() else ""
    for needle in ("prometheus:", "/metrics", "127.0.0.1:${admin_port}", "otlp:", "awsemf:", "awsxray:"):
        if needle not in cfg:
            problems.append(f"collector config lacks {needle}")
    for _, call in tree.callers("modules/service"):
        if "otel_collector" not in call.body:
            problems.append(f"{call.body.get('service_name')} has no collector sidecar")
    return problems


def check_cluster_ready_for_services(tree: Tree) -> list[str]:
    """Services name the cluster through its outputs; both must wait for the capacity
    providers, or CreateService races PutClusterCapacityProviders on the first apply (ECS
    refuses a strategy naming a provider not yet attached, and the AWS provider does not
    retry that)."""
    problems = []
    outputs = tree["modules/cluster"].outputs()
    for name in ("cluster_arn", "cluster_name"):
        output = outputs.get(name)
        if output is None or "aws_ecs_cluster_capacity_providers.this" not in output.text():
            problems.append(f"cluster output {name} does not wait for the capacity providers")
    return problems



def check_account_wide_names(tree: Tree) -> list[str]:
    """Names unique per account (IAM roles, CloudWatch dashboards) or worldwide (S3 buckets) start with the module's
    global prefix, and the platform hands every module that has such names one that carries the
    region in a standby: a standby in the DR region can then be applied beside the primary."""
    problems = []
    kinds = {"aws_iam_role": "name", "aws_s3_bucket": "bucket", "aws_cloudwatch_dashboard": "dashboard_name"}
    holders = []
    for rel, d in tree.modules().items():
        held = [(t, b) for t, attr in kinds.items() for b in d.of("resource", t)]
        if not held:
            continue
        holders.append(rel)
        if "global_name_prefix" not in d.variables():
            problems.append(f"{rel} names account-wide resources but has no global_name_prefix variable")
        for t, b in held:
            name = b.body.get(kinds[t], "")
            m = re.match(r"\$\{local\.(\w+)\}", name)
            if m:
                name = str(d.locals.get(m.group(1), "")) + name[m.end():]
            if not name.startswith(GLOBAL_PREFIX):
                problems.append(f"{rel}: {t}.{b.name} is named {b.body.get(kinds[t])!r}, not from the global prefix")
            listed = d.outputs().get("account_wide_names")
            if listed is None or f"{t}.{b.name}." not in listed.text():
                problems.append(f"{rel}: {t}.{b.name} is missing from the account_wide_names output")
    platform = tree["modules/platform"]
    glob = str(platform.locals.get("global_name_prefix", ""))
    if "var.standby" not in glob or "aws_region" not in glob:
        problems.append(f"the platform's global_name_prefix ({glob!r}) does not carry the region in a standby")
    for rel in holders:
        if rel == "modules/platform":
            continue
        for caller_dir, call in tree.callers(rel):
            if call.body.get("global_name_prefix") != "${local.global_name_prefix}":
                problems.append(f"{caller_dir}: module {call.name} ({rel}) is not given local.global_name_prefix")
            if caller_dir == "modules/platform" and f"module.{call.name}.account_wide_names" not in platform.outputs()["account_wide_names"].text():
                problems.append(f"the platform's account_wide_names output leaves out module {call.name}")
    return problems


ALL_CHECKS = [
    check_cluster_ready_for_services,
    check_service_permission_matrix,
    check_service_module_task_role,
    check_execution_roles,
    check_service_secrets,
    check_no_wildcard_allows,
    check_ci_role,
    check_queues_have_dlq,
    check_database,
    check_log_groups_have_retention,
    check_alarms_notify_sns,
    check_reference_alarms,
    check_dlq_alarm_counts_messages_being_read,
    check_scaling,
    check_events_and_filters,
    check_load_balancer,
    check_service_waits_for_listeners,
    check_database_tls,
    check_no_password_in_database_log,
    check_disaster_recovery,
    check_ecr,
    check_network,
    check_migration_task,
    check_collector_sidecar,
    check_account_wide_names,
]
