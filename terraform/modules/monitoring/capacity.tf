# Alarms beyond the reference catalogue, from the seeds' operations guidance:
#   queue-oldest-message-age    - the oldest orders message waits too long (a blocked order group,
#                                 a worker that receives nothing) even when the backlog is small;
#   ecs-cpu-high-<service>      - a service's average CPU stays high (saturated before scaling
#                                 catches up, or at its maximum task count);
#   ecs-memory-high-<service>   - a service's average memory stays high (OOM kills come next);
#   rds-connections-high        - connections near max_connections (new ones will be refused).
# Replica lag: none to watch. The Multi-AZ standby is synchronous and publishes no lag metric,
# and there is no read replica; add a ReplicaLag alarm with one.

resource "aws_cloudwatch_metric_alarm" "queue_oldest_message_age" {
  alarm_name          = "${var.name_prefix}-queue-oldest-message-age"
  alarm_description   = "The oldest message in the orders queue is older than ${var.queue_oldest_message_age_threshold_seconds} s: the worker is not consuming (not ready, stuck on an order group) although the backlog may be small."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_oldest_message_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ecs_cpu_high" {
  for_each = var.service_names

  alarm_name          = "${var.name_prefix}-ecs-cpu-high-${each.key}"
  alarm_description   = "${each.value}: average CPU above ${var.ecs_cpu_threshold}% in 8 of 10 minutes (saturated, or at its maximum task count)."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = each.value }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  datapoints_to_alarm = 8
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.ecs_cpu_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ecs_memory_high" {
  for_each = var.service_names

  alarm_name          = "${var.name_prefix}-ecs-memory-high-${each.key}"
  alarm_description   = "${each.value}: average memory above ${var.ecs_memory_threshold}% in 8 of 10 minutes (out-of-memory kills follow)."
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = each.value }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  datapoints_to_alarm = 8
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.ecs_memory_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rds_connections_high" {
  alarm_name          = "${var.name_prefix}-rds-connections-high"
  alarm_description   = "More than ${var.rds_connections_percent}% of max_connections (${var.db_max_connections}) in use for 5 minutes: pools too large for the instance, or connections leaking."
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = var.db_identifier }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = floor(var.db_max_connections * var.rds_connections_percent / 100)
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}

# The read replica's lag (only with one): reads with min_position wait for it and then fall
# back to the primary, so a lagging replica costs latency and primary load, never stale
# answers; plain reads show older data the further behind it is. The Multi-AZ standby is
# synchronous and reports no lag.
resource "aws_cloudwatch_metric_alarm" "replica_lag" {
  count = var.db_replica_identifier == null ? 0 : 1

  alarm_name          = "${var.name_prefix}-replica-lag"
  alarm_description   = "The read replica more than ${var.db_replica_lag_threshold_seconds} s behind the primary for 5 minutes, or no data: reads fall back to the primary; plain reads are that stale."
  namespace           = "AWS/RDS"
  metric_name         = "ReplicaLag"
  dimensions          = { DBInstanceIdentifier = var.db_replica_identifier }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.db_replica_lag_threshold_seconds
  # a replica that stopped replicating stops reporting the metric
  treat_missing_data = "breaching"
  alarm_actions      = local.alarm_topic
  ok_actions         = local.alarm_topic
  tags               = var.tags
}
