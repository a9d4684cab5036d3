# prod: Multi-AZ database with 35 days of point-in-time restore, its backups and the images
# copied to a second region, deletion protection, endpoint interfaces in every AZ, two projector
# tasks (one standby), order-grpc at least two tasks, shifted canary-style (10 %, then the rest
# after 5 minutes).

module "platform" {
  source = "../../modules/platform"

  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  project           = var.project
  environment       = "prod"
  certificate_arn   = var.certificate_arn
  api_host_name     = var.api_host_name
  github_repository = var.github_repository
  image_tag         = var.image_tag
  alert_emails      = var.alert_emails

  alb_internal                     = var.alb_internal
  alb_waf_rate_limit_per_5_minutes = var.alb_waf_rate_limit_per_5_minutes
  alb_allowed_cidrs                = var.alb_allowed_cidrs
  alb_allowed_security_group_ids   = var.alb_allowed_security_group_ids

  vpc_cidr            = "10.50.0.0/16"
  az_letters          = var.az_letters
  az_count            = 3
  enable_nat_gateway  = var.enable_nat_gateway
  interface_endpoints = var.interface_endpoints

  db_instance_class           = "db.m7g.large"
  db_multi_az                 = true
  db_allocated_storage_gb     = 100
  db_max_allocated_storage_gb = 1000
  db_backup_retention_days    = 35 # the RDS maximum: point-in-time restore over five weeks
  db_read_replica             = var.db_read_replica
  db_max_connections          = 800
  deletion_protection         = true

  dr_region                = var.dr_region
  dr_backup_retention_days = 14
  standby                  = var.standby
  db_restore               = var.db_restore

  grpc_cpu            = 1024
  grpc_memory         = 2048
  grpc_min_capacity   = 2
  grpc_max_capacity   = 8
  projector_cpu       = 512
  projector_memory    = 1024
  projector_count     = 2
  worker_cpu          = 512
  worker_memory       = 1024
  worker_min_capacity = 1
  worker_max_capacity = 5

  grpc_deployment_config = "CodeDeployDefault.ECSCanary10Percent5Minutes"

  container_insights           = "enhanced"
  worker_providers             = var.worker_providers
  worker_provider_endpoints    = var.worker_provider_endpoints
  worker_provider_egress_cidrs = var.worker_provider_egress_cidrs
  worker_provider_timeout_ms   = var.worker_provider_timeout_ms
  worker_concurrency           = var.worker_concurrency

  worker_orders_per_second_per_task = var.worker_orders_per_second_per_task

  log_retention_days          = 90
  secret_recovery_window_days = 30
  create_github_oidc_provider = var.create_github_oidc_provider

  db_credentials_version         = var.db_credentials_version
  grpc_token_version             = var.grpc_token_version
  grpc_token_accept_previous     = var.grpc_token_accept_previous
  grpc_callers                   = var.grpc_callers
  grpc_command_event_ids         = var.grpc_command_event_ids
  grpc_wait_for_approval_minutes = var.grpc_wait_for_approval_minutes
}
