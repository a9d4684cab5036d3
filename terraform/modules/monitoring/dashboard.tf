# `<prefix>-dashboard`: the reference panels, one row per layer (SQS / ALB / RDS / ECS / App).

locals {
  sqs_queue = { QueueName = var.queue_name }

  widgets = [
    # --- row 1: SQS
    { x = 0, y = 0, title = "SQS backlog (visible / in flight) and oldest message age (s)", metrics = [
      ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_name, { label = "visible" }],
      ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", var.queue_name, { label = "in flight" }],
      ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_name, { label = "oldest age s", yAxis = "right" }],
    ], stat = "Maximum" },
    { x = 8, y = 0, title = "DLQ messages (visible)", metrics = [
      ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_name, { label = "DLQ visible", color = "#d62728" }],
    ], stat = "Maximum" },
    { x = 16, y = 0, title = "SQS throughput: sent vs processed (WorkerActivity)", metrics = [
      ["AWS/SQS", "NumberOfMessagesSent", "QueueName", var.queue_name, { label = "sent (projector)" }],
      ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", var.queue_name, { label = "processed (worker)" }],
    ], stat = "Sum" },
    # --- row 2: ALB
    { x = 0, y = 6, title = "HTTP 5xx (ALB / target group)", metrics = [
      ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", var.alb_arn_suffix, { label = "ALB 5xx" }],
      ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", var.alb_arn_suffix, { label = "target 5xx" }],
    ], stat = "Sum" },
    { x = 8, y = 6, title = "ALB latency p95 (TargetResponseTime)", metrics = [
      ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", var.alb_arn_suffix, { label = "p95", stat = "p95" }],
    ], stat = "p95" },
    { x = 16, y = 6, title = "ALB RequestCount", metrics = [
      ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", var.alb_arn_suffix, { label = "requests" }],
    ], stat = "Sum" },
    # --- row 3: RDS
    { x = 0, y = 12, title = "RDS CPUUtilization", metrics = [
      ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", var.db_identifier, { label = "CPU %" }],
    ], stat = "Average" },
    { x = 8, y = 12, title = "RDS FreeStorageSpace", metrics = [
      ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", var.db_identifier, { label = "free bytes" }],
    ], stat = "Minimum" },
    { x = 16, y = 12, title = "RDS DatabaseConnections", metrics = [
      ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", var.db_identifier, { label = "connections" }],
    ], stat = "Maximum" },
    # --- row 4: ECS capacity
    { x = 0, y = 18, title = "Worker tasks: desired vs running", metrics = [
      ["ECS/ContainerInsights", "DesiredTaskCount", "ServiceName", var.service_names["worker"], "ClusterName", var.cluster_name, { label = "desired" }],
      ["ECS/ContainerInsights", "RunningTaskCount", "ServiceName", var.service_names["worker"], "ClusterName", var.cluster_name, { label = "running" }],
    ], stat = "Maximum" },
    { x = 8, y = 18, title = "order-grpc / projector tasks: desired vs running", metrics = [
      ["ECS/ContainerInsights", "DesiredTaskCount", "ServiceName", var.service_names["grpc"], "ClusterName", var.cluster_name, { label = "grpc desired" }],
      ["ECS/ContainerInsights", "RunningTaskCount", "ServiceName", var.service_names["grpc"], "ClusterName", var.cluster_name, { label = "grpc running" }],
      ["ECS/ContainerInsights", "DesiredTaskCount", "ServiceName", var.service_names["projector"], "ClusterName", var.cluster_name, { label = "projector desired" }],
      ["ECS/ContainerInsights", "RunningTaskCount", "ServiceName", var.service_names["projector"], "ClusterName", var.cluster_name, { label = "projector running" }],
    ], stat = "Maximum" },
    { x = 16, y = 18, title = "Service CPU % / memory %", metrics = concat(
      [for k, name in var.service_names : ["AWS/ECS", "CPUUtilization", "ServiceName", name, "ClusterName", var.cluster_name, { label = "${k} cpu" }]],
      [for k, name in var.service_names : ["AWS/ECS", "MemoryUtilization", "ServiceName", name, "ClusterName", var.cluster_name, { label = "${k} memory" }]],
    ), stat = "Average" },
    # --- row 5: application
    { x = 0, y = 24, title = "App errors: ApiErrorCount / WorkerFailedCount", metrics = [
      [var.app_metrics_namespace, "ApiErrorCount", { label = "API errors" }],
      [var.app_metrics_namespace, "WorkerFailedCount", { label = "worker failures" }],
    ], stat = "Sum" },
    { x = 8, y = 24, title = "Projector lag (seconds)", metrics = [
      [var.app_metrics_namespace, "order_projector_lag_seconds", "service", var.projector_metrics_service, { label = "max lag s" }],
    ], stat = "Maximum" },
    { x = 16, y = 24, title = "Projector lag (events)", metrics = [
      [var.app_metrics_namespace, "order_projector_lag_events", "service", var.projector_metrics_service, { label = "max lag events" }],
    ], stat = "Maximum" },
  ]

  dashboard_body = {
    widgets = concat(
      [for w in local.widgets : {
        type   = "metric"
        x      = w.x
        y      = w.y
        width  = 8
        height = 6
        properties = {
          title   = w.title
          region  = local.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          stat    = w.stat
          metrics = w.metrics
        }
      }],
      [{
        type   = "alarm"
        x      = 0
        y      = 30
        width  = 24
        height = 4
        properties = {
          title  = "Alarms"
          alarms = var.extra_alarm_arns_for_dashboard == null ? local.own_alarm_arns : concat(local.own_alarm_arns, var.extra_alarm_arns_for_dashboard)
        }
      }],
    )
  }

  own_alarm_arns = concat([
    aws_cloudwatch_metric_alarm.api_error_spike.arn,
    aws_cloudwatch_metric_alarm.worker_failed.arn,
    aws_cloudwatch_metric_alarm.projector_lag.arn,
    aws_cloudwatch_metric_alarm.queue_backlog_high_sustained.arn,
    aws_cloudwatch_metric_alarm.dlq_nonempty.arn,
    aws_cloudwatch_metric_alarm.alb_5xx.arn,
    aws_cloudwatch_metric_alarm.tg_5xx.arn,
    aws_cloudwatch_metric_alarm.alb_latency_p95.arn,
    aws_cloudwatch_metric_alarm.rds_cpu_high.arn,
    aws_cloudwatch_metric_alarm.rds_free_storage_low.arn,
    aws_cloudwatch_metric_alarm.queue_oldest_message_age.arn,
    aws_cloudwatch_metric_alarm.rds_connections_high.arn,
    ],
    [for a in aws_cloudwatch_metric_alarm.ecs_cpu_high : a.arn],
    [for a in aws_cloudwatch_metric_alarm.ecs_memory_high : a.arn],
    [for a in aws_cloudwatch_metric_alarm.replica_lag : a.arn],
  )
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "${coalesce(var.global_name_prefix, var.name_prefix)}-dashboard" # dashboards are global
  dashboard_body = jsonencode(local.dashboard_body)
}
