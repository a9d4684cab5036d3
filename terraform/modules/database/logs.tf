# RDS would create the export log groups itself, without retention; create them first.

resource "aws_cloudwatch_log_group" "exports" {
  #checkov:skip=CKV_AWS_338:Retention is a per-environment cost decision (var.log_retention_days); the database log is for troubleshooting, not audit.
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name_prefix}-db/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "replica_exports" {
  #checkov:skip=CKV_AWS_338:Retention is a per-environment cost decision (var.log_retention_days); the database log is for troubleshooting, not audit.
  for_each = var.read_replica ? toset(["postgresql", "upgrade"]) : toset([])

  name              = "/aws/rds/instance/${var.name_prefix}-db-replica/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}
