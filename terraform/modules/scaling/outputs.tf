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
