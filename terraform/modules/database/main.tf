# RDS PostgreSQL: isolated subnets, not publicly accessible, encrypted with the environment's
# key, automated backups with point-in-time restore, Performance Insights, enhanced monitoring,
# master password generated and kept by RDS in Secrets Manager (never in Terraform state).

resource "aws_db_subnet_group" "this" {
  name        = "${var.name_prefix}-db"
  description = "Isolated subnets of ${var.name_prefix}"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is var.multi_az: on in prod, off in dev to halve the cost.
  #checkov:skip=CKV_AWS_293:Deletion protection is var.deletion_protection, on outside dev (asserted by tests/infra).
  identifier     = "${var.name_prefix}-db"
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  # a restored instance keeps the source's database and master user
  db_name  = var.restore == null ? var.database_name : null
  username = var.restore == null ? var.master_username : null
  port     = 5432

  # Created from another instance's automated backups (a standby in the DR region, a rehearsal):
  # read at creation only; changing or removing var.restore later never replaces the instance.
  dynamic "restore_to_point_in_time" {
    for_each = var.restore == null ? [] : [var.restore]
    content {
      source_db_instance_automated_backups_arn = restore_to_point_in_time.value.source_automated_backups_arn
      source_db_instance_identifier            = restore_to_point_in_time.value.source_db_instance_identifier
      restore_time                             = restore_to_point_in_time.value.restore_time
      use_latest_restorable_time               = restore_to_point_in_time.value.restore_time == null ? true : null
    }
  }

  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  # A restore keeps the key of the backups it reads (RestoreDBInstanceToPointInTime takes no
  # KmsKeyId; a standby's are encrypted with the DR copy key): naming another key here would make
  # the next plan replace the restored instance.
  kms_key_id = var.restore == null ? var.kms_key_arn : null

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.multi_az
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  parameter_group_name                = aws_db_parameter_group.this.name
  iam_database_authentication_enabled = true

  backup_retention_period  = var.backup_retention_days
  backup_window            = "02:00-03:00"
  maintenance_window       = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot    = true
  delete_automated_backups = false
  deletion_protection      = var.deletion_protection
  # Not tied to deletion_protection: the apply that lifts it (RDS deletes nothing before)
  # must not also give up the final snapshot.
  skip_final_snapshot       = !var.final_snapshot
  final_snapshot_identifier = var.final_snapshot ? "${var.name_prefix}-db-final" : null

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.apply_immediately

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = var.performance_insights_retention_days

  monitoring_interval = var.monitoring_interval_seconds
  monitoring_role_arn = aws_iam_role.monitoring.arn

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  tags = var.tags

  # the log groups must exist (with retention) before RDS creates them without
  depends_on = [aws_cloudwatch_log_group.exports]

  lifecycle {
    ignore_changes = [restore_to_point_in_time]
  }
}
