module "load_balancer" {
  source = "../load_balancer"

  name_prefix              = local.name_prefix
  vpc_id                   = module.network.vpc_id
  subnet_ids               = var.alb_internal ? module.network.private_subnet_ids : module.network.public_subnet_ids
  certificate_arn          = var.certificate_arn
  target_security_group_id = module.grpc.security_group_id
  target_port              = local.grpc_port
  internal                 = var.alb_internal
  allowed_cidrs            = var.alb_allowed_cidrs
  deletion_protection      = var.deletion_protection
}
