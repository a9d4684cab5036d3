resource "aws_cloudwatch_log_group" "app" {
  #checkov:skip=CKV_AWS_338:Retention is a per-environment cost decision (var.log_retention_days); application logs are for operations, audit trails live in the event log and CloudTrail.
  name              = "/ecs/${var.name_prefix}/${var.service_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { service = var.service_name })
}

# Embedded-metric-format records written by the collector sidecar.
resource "aws_cloudwatch_log_group" "metrics" {
  #checkov:skip=CKV_AWS_338:EMF records only carry metrics that CloudWatch already extracted; a short retention is enough.
  count = local.otel ? 1 : 0

  name              = "/ecs/${var.name_prefix}/${var.service_name}/metrics"
  retention_in_days = var.metrics_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { service = var.service_name })
}
