# order-worker: step scaling on the orders queue backlog, 1..5 tasks (reference V3.4 s.7).
#   scaleout-sqs-backlog-high  - visible > 10 for 2 x 60 s  -> +1, +2 or +3 tasks by how many
#                                task-minutes of work wait (cooldown 60 s)
#   scalein-sqs-backlog-empty  - visible <= 0 for 5 x 60 s  -> -1 task (cooldown 120 s)
# The scale-in alarm sits in ALARM whenever the queue is idle: that is expected.
#
# The steps follow the measured rate of one task (order-bench saga, docs/benchmarks.md):
# a task works on up to ORDER_WORKER_CONCURRENCY messages at once, so the queue shows a visible
# backlog only once every task is saturated. One task-minute of work is
#   task_minute = worker_orders_per_second_per_task x 8 messages per order x 60 s;
# a backlog up to one task-minute adds one task, up to three task-minutes two, beyond that three.
locals {
  task_minute = var.worker_orders_per_second_per_task * 8 * 60
}

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${var.worker_service_name}"
  min_capacity       = var.worker_min_capacity
  max_capacity       = var.worker_max_capacity
}

resource "aws_appautoscaling_policy" "worker_scale_out" {
  name               = "${var.name_prefix}-worker-scale-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    # Bounds are relative to the alarm's threshold (scale_out_backlog_threshold).
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = local.task_minute
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = local.task_minute
      metric_interval_upper_bound = 3 * local.task_minute
      scaling_adjustment          = 2
    }

    step_adjustment {
      metric_interval_lower_bound = 3 * local.task_minute
      scaling_adjustment          = 3
    }
  }
}

resource "aws_appautoscaling_policy" "worker_scale_in" {
  name               = "${var.name_prefix}-worker-scale-in"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 120
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = -1
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "scaleout_sqs_backlog_high" {
  alarm_name          = "${var.name_prefix}-scaleout-sqs-backlog-high"
  alarm_description   = "Orders queue backlog above ${var.scale_out_backlog_threshold} for 2 minutes: add a worker task."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.scale_out_backlog_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_scale_out.arn, var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "scalein_sqs_backlog_empty" {
  alarm_name          = "${var.name_prefix}-scalein-sqs-backlog-empty"
  alarm_description   = "Orders queue empty for 5 minutes: remove a worker task (down to the minimum). In ALARM while idle, by design."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_scale_in.arn, var.alarm_topic_arn]
  tags                = var.tags
}
