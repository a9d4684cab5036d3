# prod: Multi-AZ database, deletion protection, endpoint interfaces in every AZ, two projector
# tasks (one standby), order-grpc at least two tasks.

module "platform" {
  source = "../../modules/platform"

  project           = var.project
  environment       = "prod"
  certificate_arn   = var.certificate_arn
  github_repository = var.github_repository
  image_tag         = var.image_tag
  alert_emails      = var.alert_emails
  alb_allowed_cidrs = var.alb_allowed_cidrs

  vpc_cidr           = "10.50.0.0/16"
  az_count           = 3
  enable_nat_gateway = false

  db_instance_class           = "db.m7g.large"
  db_multi_az                 = true
  db_allocated_storage_gb     = 100
  db_max_allocated_storage_gb = 1000
  db_backup_retention_days    = 14
  deletion_protection         = true

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

  container_insights          = "enhanced"
  log_retention_days          = 90
  secret_recovery_window_days = 30
  create_github_oidc_provider = var.create_github_oidc_provider
}
