output "alerts_topic_arn" {
  description = "ARN of the `<prefix>-alerts` SNS topic."
  value       = aws_sns_topic.alerts.arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Names of the alarms of this module."
  value = [
    aws_cloudwatch_metric_alarm.api_error_spike.alarm_name,
    aws_cloudwatch_metric_alarm.worker_failed.alarm_name,
    aws_cloudwatch_metric_alarm.projector_lag.alarm_name,
    aws_cloudwatch_metric_alarm.queue_backlog_high_sustained.alarm_name,
    aws_cloudwatch_metric_alarm.dlq_nonempty.alarm_name,
    aws_cloudwatch_metric_alarm.alb_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.tg_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.alb_latency_p95.alarm_name,
    aws_cloudwatch_metric_alarm.rds_cpu_high.alarm_name,
    aws_cloudwatch_metric_alarm.rds_free_storage_low.alarm_name,
  ]
}
