# Server settings: TLS required, runaway statements and forgotten transactions cut off, slow
# statements and DDL logged, pg_stat_statements loaded, a fixed connection limit (the
# rds-connections-high alarm is a share of it).
#
# DDL is logged and exported to CloudWatch, so no statement may carry a password:
# bootstrap-roles.sh sends SCRAM verifiers computed client side, and password_encryption keeps
# any password set some other way hashed.
#
# statement_timeout is a server-wide ceiling; the migration login user lifts it for itself
# (bootstrap-roles.sh), and the services may set lower values per session.

resource "aws_db_parameter_group" "this" {
  name        = "${var.name_prefix}-postgres${split(".", var.engine_version)[0]}"
  family      = "postgres${split(".", var.engine_version)[0]}"
  description = "${var.name_prefix}: timeouts, TLS, logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "statement_timeout"
    value = tostring(var.statement_timeout_ms)
  }

  parameter {
    name  = "idle_in_transaction_session_timeout"
    value = tostring(var.idle_in_transaction_timeout_ms)
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "password_encryption"
    value = "scram-sha-256"
  }

  parameter {
    name         = "max_connections"
    value        = tostring(var.max_connections)
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.log_min_duration_statement_ms)
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  parameter {
    name  = "log_temp_files"
    value = "0"
  }

  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}
