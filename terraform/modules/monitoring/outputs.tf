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
  value = concat([
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
    aws_cloudwatch_metric_alarm.queue_oldest_message_age.alarm_name,
    aws_cloudwatch_metric_alarm.rds_connections_high.alarm_name,
    ],
    [for a in aws_cloudwatch_metric_alarm.ecs_cpu_high : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.ecs_memory_high : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.worker_circuit_open : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.replica_lag : a.alarm_name],
  )
}

output "deployment_alarm_names" {
  description = "Alarms that roll a blue/green deployment of order-grpc back."
  value = [
    aws_cloudwatch_metric_alarm.alb_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.tg_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.alb_latency_p95.alarm_name,
    aws_cloudwatch_metric_alarm.api_error_spike.alarm_name,
  ]
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (the dashboard: CloudWatch dashboards are global)."
  value       = [aws_cloudwatch_dashboard.this.dashboard_name]
}
