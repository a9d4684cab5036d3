# dev: smallest sizes, one AZ of endpoint interfaces, no NAT, no standby database, no
# disaster-recovery copies, everything destroyable. Still two AZs of subnets (RDS and the ALB
# require them).

module "platform" {
  source = "../../modules/platform"

  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  project           = var.project
  environment       = "dev"
  certificate_arn   = var.certificate_arn
  api_host_name     = var.api_host_name
  github_repository = var.github_repository
  image_tag         = var.image_tag
  alert_emails      = var.alert_emails

  alb_internal                     = var.alb_internal
  alb_waf_rate_limit_per_5_minutes = var.alb_waf_rate_limit_per_5_minutes
  alb_allowed_cidrs                = var.alb_allowed_cidrs
  alb_allowed_security_group_ids   = var.alb_allowed_security_group_ids

  vpc_cidr            = "10.40.0.0/16"
  az_letters          = var.az_letters
  az_count            = 2
  enable_nat_gateway  = var.enable_nat_gateway
  endpoint_az_count   = 1
  interface_endpoints = var.interface_endpoints

  db_instance_class        = "db.t4g.micro"
  db_multi_az              = false
  db_backup_retention_days = 3
  db_max_connections       = 80 # ~85 is db.t4g.micro's RDS default
  # a deploy's peak: 2 x (grpc_max_capacity 2 + projector_count 1) x (8 + 2) = 60 connections
  # (output database_connections; 16, the binaries' default, would make it 108)
  db_pool_size        = 8
  deletion_protection = false
  db_final_snapshot   = false
  dr_region           = var.dr_region

  grpc_min_capacity        = 1
  grpc_max_capacity        = 2
  projector_count          = 1
  worker_min_capacity      = 1
  worker_max_capacity      = 5
  worker_capacity_provider = "FARGATE_SPOT"

  worker_providers             = var.worker_providers
  worker_provider_endpoints    = var.worker_provider_endpoints
  worker_provider_egress_cidrs = var.worker_provider_egress_cidrs
  worker_provider_timeout_ms   = var.worker_provider_timeout_ms
  worker_concurrency           = var.worker_concurrency

  worker_orders_per_second_per_task = var.worker_orders_per_second_per_task

  log_retention_days          = 14
  secret_recovery_window_days = 0
  ecr_force_delete            = true
  create_github_oidc_provider = var.create_github_oidc_provider

  db_credentials_version         = var.db_credentials_version
  grpc_token_version             = var.grpc_token_version
  grpc_token_accept_previous     = var.grpc_token_accept_previous
  grpc_callers                   = var.grpc_callers
  grpc_command_event_ids         = var.grpc_command_event_ids
  grpc_wait_for_approval_minutes = var.grpc_wait_for_approval_minutes
}
