# An optional read replica (var.read_replica): asynchronous streaming replication from the
# primary, in another AZ of the same isolated subnets, same security group, parameter group,
# key and monitoring. order-grpc reads GetOrder, ListOrders and GetOrderEvents there
# (ORDER_GRPC_READ_DATABASE_URL, the grpc login secret's `read_url`); a read with
# min_position waits for it to replay that far, else the primary answers, and an unreachable
# replica is replaced by the primary (docs/operations.md). Its lag is alarmed on
# (modules/monitoring, ReplicaLag).
#
# It is not the Multi-AZ standby: that one is synchronous, takes no reads and replaces the
# primary on failure. A replica may lose its last seconds if promoted by hand (async).

resource "aws_db_instance" "replica" {
  #checkov:skip=CKV_AWS_157:A read replica serves reads; the primary's Multi-AZ standby is the failover target.
  #checkov:skip=CKV_AWS_293:Deletion protection is var.deletion_protection, on outside dev (asserted by tests/infra).
  #checkov:skip=CKV_AWS_133:Backups are the primary's (point-in-time restore, replicated to the DR region); a replica is rebuilt from the primary.
  count = var.read_replica ? 1 : 0

  identifier          = "${var.name_prefix}-db-replica"
  replicate_source_db = aws_db_instance.this.identifier
  instance_class      = coalesce(var.read_replica_instance_class, var.instance_class)

  storage_type          = "gp3"
  max_allocated_storage = var.max_allocated_storage_gb
  # A replica in the primary's region is always encrypted with the primary's key (no kms_key_id:
  # a restored primary's key is its backups', and naming another would replace the replica).
  storage_encrypted = true

  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = false
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  parameter_group_name                = aws_db_parameter_group.this.name
  iam_database_authentication_enabled = true

  # Backups come from the primary; the replica is made again from it when needed.
  backup_retention_period = 0
  maintenance_window      = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot   = true
  deletion_protection     = var.deletion_protection
  skip_final_snapshot     = true

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.apply_immediately

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = var.performance_insights_retention_days

  monitoring_interval = var.monitoring_interval_seconds
  monitoring_role_arn = aws_iam_role.monitoring.arn

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  tags = merge(var.tags, { Role = "read-replica" })

  depends_on = [aws_cloudwatch_log_group.replica_exports]
}
