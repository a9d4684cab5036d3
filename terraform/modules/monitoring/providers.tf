# order-worker's provider circuit breakers (the seed's "Payment Gateway Outage": an alert goes
# to the on-call team when the breaker opens). The collector writes the breaker's transitions
# (order_worker_circuit_transitions_total{provider, state}) to CloudWatch; an open breaker
# counts one "open" transition when it opens and one more after every failed trial (every
# cooldown, 10 s), so the alarm stays in ALARM for the whole outage and returns to OK within a
# few minutes of recovery.
#   worker-circuit-open-<provider> - a breaker opened (or stayed open) in the last minute

resource "aws_cloudwatch_metric_alarm" "worker_circuit_open" {
  for_each = toset(var.worker_providers)

  alarm_name          = "${var.name_prefix}-worker-circuit-open-${each.key}"
  alarm_description   = "order-worker's ${each.key} circuit breaker is open: the ${each.key} provider failed ${var.worker_breaker_threshold_hint} calls in a row (or, after an outage, a trial call failed). Orders wait (nothing is lost) and go on by themselves once it answers; see docs/operations.md (Provider outage)."
  namespace           = var.app_metrics_namespace
  metric_name         = "order_worker_circuit_transitions_total"
  dimensions          = { service = var.worker_metrics_service, provider = each.key, state = "open" }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_topic
  ok_actions          = local.alarm_topic
  tags                = var.tags
}
