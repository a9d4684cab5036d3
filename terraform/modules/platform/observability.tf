module "monitoring" {
  source = "../monitoring"

  name_prefix           = local.name_prefix
  global_name_prefix    = local.global_name_prefix
  kms_key_arn           = module.kms.key_arn
  app_metrics_namespace = local.app_metrics
  alert_emails          = var.alert_emails

  cluster_name = module.cluster.cluster_name
  cluster_arn  = module.cluster.cluster_arn
  service_names = {
    grpc      = module.grpc.service_name
    projector = module.projector.service_name
    worker    = module.worker.service_name
  }
  grpc_log_group_name   = module.grpc.log_group_name
  worker_log_group_name = module.worker.log_group_name

  queue_name         = module.queue.queue_name
  dlq_name           = module.queue.dlq_name
  alb_arn_suffix     = module.load_balancer.arn_suffix
  db_identifier      = module.database.identifier
  db_max_connections = module.database.max_connections

  db_replica_identifier            = module.database.replica_identifier
  db_replica_lag_threshold_seconds = var.db_replica_lag_threshold_seconds

  extra_alarm_arns_for_dashboard = module.scaling.alarm_arns
}

module "scaling" {
  source = "../scaling"

  name_prefix            = local.name_prefix
  cluster_name           = module.cluster.cluster_name
  grpc_service_name      = module.grpc.service_name
  projector_service_name = module.projector.service_name
  worker_service_name    = module.worker.service_name
  queue_name             = module.queue.queue_name
  alarm_topic_arn        = module.monitoring.alerts_topic_arn

  worker_min_capacity = var.worker_min_capacity
  worker_max_capacity = var.worker_max_capacity
  grpc_min_capacity   = var.grpc_min_capacity
  grpc_max_capacity   = var.grpc_max_capacity
  projector_count     = var.projector_count

  worker_orders_per_second_per_task = var.worker_orders_per_second_per_task
}
