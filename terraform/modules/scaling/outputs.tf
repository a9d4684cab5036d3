output "alarm_arns" {
  description = "ARNs of the scaling alarms."
  value = [
    aws_cloudwatch_metric_alarm.scaleout_sqs_backlog_high.arn,
    aws_cloudwatch_metric_alarm.scalein_sqs_backlog_empty.arn,
  ]
}

output "alarm_names" {
  description = "Names of the scaling alarms."
  value = [
    aws_cloudwatch_metric_alarm.scaleout_sqs_backlog_high.alarm_name,
    aws_cloudwatch_metric_alarm.scalein_sqs_backlog_empty.alarm_name,
  ]
}

output "worker_scale_out_task_minute" {
  description = "Visible messages that are one task-minute of work (worker_orders_per_second_per_task x 8 messages per order x 60 s): the scale-out steps' unit."
  value       = local.task_minute
}
