module "database" {
  source = "../database"

  name_prefix        = local.name_prefix
  global_name_prefix = local.global_name_prefix
  vpc_id             = module.network.vpc_id
  subnet_ids         = module.network.isolated_subnet_ids
  kms_key_arn        = module.kms.key_arn

  # the worker is absent on purpose: it reaches the log only through order-grpc
  client_security_group_ids = {
    order-grpc      = module.grpc.security_group_id
    order-projector = module.projector.security_group_id
    migrate         = module.migration.security_group_id
  }

  instance_class              = var.db_instance_class
  multi_az                    = var.db_multi_az
  read_replica                = var.db_read_replica
  read_replica_instance_class = var.db_read_replica_instance_class
  deletion_protection         = var.deletion_protection
  final_snapshot              = var.db_final_snapshot
  backup_retention_days       = var.db_backup_retention_days
  allocated_storage_gb        = var.db_allocated_storage_gb
  max_allocated_storage_gb    = var.db_max_allocated_storage_gb
  log_retention_days          = var.log_retention_days
  secret_recovery_window_days = var.secret_recovery_window_days
  credentials_version         = var.db_credentials_version
  max_connections             = var.db_max_connections
  restore                     = var.db_restore
}

module "queue" {
  source = "../queue"

  name_prefix       = local.name_prefix
  max_receive_count = var.max_receive_count
}

# docs/operations.md, "Connections near the limit": tasks x (pool + 2) below max_connections,
# counted at a deploy's peak (output database_connections): a blue/green deployment keeps
# order-grpc's original task set beside the replacement until its termination wait ends, and a
# rolling update runs the projector at up to 200 %. A warning at plan; the roots' tests hold
# dev and prod to it.
check "database_connections_at_a_deploys_peak" {
  assert {
    condition     = local.database_connections_peak < var.db_max_connections
    error_message = "a deploy's peak of ${local.database_connections_peak} database connections, 2 x (grpc_max_capacity + projector_count) x (db_pool_size + 2), is not below db_max_connections (${var.db_max_connections}): lower db_pool_size or the task counts, or raise db_max_connections with an instance class whose RDS default allows it."
  }
}

locals {
  database_connections_peak = 2 * (var.grpc_max_capacity + var.projector_count) * (var.db_pool_size + 2)
}
