# dev: smallest sizes, one AZ of endpoint interfaces, no NAT, no standby database, everything
# destroyable. Still two AZs of subnets (RDS and the ALB require them).

module "platform" {
  source = "../../modules/platform"

  project           = var.project
  environment       = "dev"
  certificate_arn   = var.certificate_arn
  github_repository = var.github_repository
  image_tag         = var.image_tag
  alert_emails      = var.alert_emails

  vpc_cidr           = "10.40.0.0/16"
  az_count           = 2
  enable_nat_gateway = false
  endpoint_az_count  = 1

  db_instance_class        = "db.t4g.micro"
  db_multi_az              = false
  db_backup_retention_days = 3
  deletion_protection      = false

  grpc_min_capacity        = 1
  grpc_max_capacity        = 2
  projector_count          = 1
  worker_min_capacity      = 1
  worker_max_capacity      = 5
  worker_capacity_provider = "FARGATE_SPOT"

  log_retention_days          = 14
  secret_recovery_window_days = 0
  ecr_force_delete            = true
  create_github_oidc_provider = var.create_github_oidc_provider
}
