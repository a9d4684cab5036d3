# The reference alarm catalogue (names after `<prefix>-`), plus projector-lag; capacity.tf has
# the further alarms the seeds list (oldest message age, ECS CPU and memory per service, RDS
# connections). The autoscaling alarms scaleout-sqs-backlog-high and scalein-sqs-backlog-empty
# live in the scaling module because they drive the worker's scaling policies. Every alarm
# notifies `<prefix>-alerts`.
#
# The ALB alarms watch the whole load balancer (dimension LoadBalancer only), not one target
# group: order-grpc is deployed blue/green, and the live target group changes with every
# deployment. alb-5xx, tg-5xx, alb-latency-p95 and api-error-spike also roll a blue/green
# deployment back (deployment_alarm_names).

locals {
  alarm_topic = [aws_sns_topic.alerts.arn]
}

# --- application (log-based) -----------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "api_error_spike" {
  alarm_name          = "${var.name_prefix}-api-error-spike"
  alarm_description   = "order-grpc logged more than ${var.api_error_threshold} ERROR lines in a minute: broken deploy, database failure, dependency outage."
  namespace           = var.app_metrics_namespace
  metric_name         = "ApiErrorCount"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_error_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "worker_failed" {
  alarm_name          = "${var.name_prefix}-worker-failed"
  alarm_description   = "order-worker failed at least one message in the last minute (terminal failure, DLQ-bound, delete failure)."
  namespace           = var.app_metrics_namespace
  metric_name         = "WorkerFailedCount"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "projector_lag" {
  alarm_name          = "${var.name_prefix}-projector-lag"
  alarm_description   = "A projector subscription is more than ${var.projector_lag_threshold_seconds} s behind the event log for ${var.projector_lag_periods} minutes, or the projector stopped reporting (missing data breaches)."
  namespace           = var.app_metrics_namespace
  metric_name         = "order_projector_lag_seconds"
  dimensions          = { service = var.projector_metrics_service }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.projector_lag_periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.projector_lag_threshold_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

# --- SQS -------------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "queue_backlog_high_sustained" {
  alarm_name          = "${var.name_prefix}-queue-backlog-high-sustained"
  alarm_description   = "More than ${var.backlog_sustained_threshold} visible messages for ${var.backlog_sustained_periods} minutes despite scaling: worker stuck, misconfigured or out of throughput."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.backlog_sustained_periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.backlog_sustained_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

# Visible and in-flight messages together: an operator reading a dead letter (a receive hides it
# for the visibility timeout) must not turn the alarm OK while the message is still there.
resource "aws_cloudwatch_metric_alarm" "dlq_nonempty" {
  alarm_name          = "${var.name_prefix}-dlq-nonempty"
  alarm_description   = "Messages in the dead-letter queue (visible or being read): they exceeded maxReceiveCount or were rejected as irrecoverable. Critical."
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags

  metric_query {
    id          = "messages"
    expression  = "visible + in_flight"
    label       = "dead letters, visible and in flight"
    return_data = true
  }
  metric_query {
    id = "visible"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.dlq_name }
      stat        = "Maximum"
      period      = 60
    }
  }
  metric_query {
    id = "in_flight"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = var.dlq_name }
      stat        = "Maximum"
      period      = 60
    }
  }
}

# --- ALB -------------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${var.name_prefix}-alb-5xx"
  alarm_description   = "The load balancer itself answered 5xx (no healthy target, target crashed or timed out)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alb_5xx_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "tg_5xx" {
  alarm_name          = "${var.name_prefix}-tg-5xx"
  alarm_description   = "order-grpc tasks answered HTTP 5xx (gRPC errors travel as HTTP 200 + grpc-status, so this means the server broke)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.tg_5xx_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "alb_latency_p95" {
  alarm_name          = "${var.name_prefix}-alb-latency-p95"
  alarm_description   = "p95 target response time above ${var.latency_p95_threshold_seconds} s for 3 of 5 minutes: slow database, saturation."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  extended_statistic  = "p95"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.latency_p95_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

# --- RDS -------------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "rds_cpu_high" {
  alarm_name          = "${var.name_prefix}-rds-cpu-high"
  alarm_description   = "Database CPU above ${var.rds_cpu_threshold}% in 8 of 10 minutes: overload, inefficient queries, undersized instance."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = var.db_identifier }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  datapoints_to_alarm = 8
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.rds_cpu_threshold
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rds_free_storage_low" {
  alarm_name          = "${var.name_prefix}-rds-free-storage-low"
  alarm_description   = "Less than ${var.rds_free_storage_threshold_gib} GiB free on the database volume: the event log only grows."
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = var.db_identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = var.rds_free_storage_threshold_gib * 1024 * 1024 * 1024
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}
