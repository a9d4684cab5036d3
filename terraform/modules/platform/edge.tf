# The load balancer of order-grpc: internal unless var.alb_internal = false (then internet-facing
# with WAF). Callers are declared: var.alb_allowed_cidrs and var.alb_allowed_security_group_ids,
# plus order-worker, which reaches order-grpc through it (Service Connect cannot serve a
# blue/green service). When the ALB is public, the worker's traffic leaves through the NAT
# gateways, so their addresses are admitted too.

module "load_balancer" {
  source = "../load_balancer"

  name_prefix              = local.name_prefix
  global_name_prefix       = local.global_name_prefix
  vpc_id                   = module.network.vpc_id
  subnet_ids               = var.alb_internal ? module.network.private_subnet_ids : module.network.public_subnet_ids
  certificate_arn          = var.certificate_arn
  kms_key_arn              = module.kms.key_arn
  target_security_group_id = module.grpc.security_group_id
  target_port              = local.grpc_port
  test_listener_port       = var.alb_test_listener_port
  internal                 = var.alb_internal
  allowed_cidrs            = var.alb_allowed_cidrs
  allowed_security_group_ids = merge(var.alb_allowed_security_group_ids, {
    order-worker = module.worker.security_group_id
  })
  late_allowed_cidrs           = var.alb_internal ? [] : [for ip in module.network.nat_public_ips : "${ip}/32"]
  waf_rate_limit_per_5_minutes = var.alb_waf_rate_limit_per_5_minutes
  deletion_protection          = var.deletion_protection
}
