# Blue/green deployments of order-grpc by CodeDeploy (the projector and the worker keep rolling
# updates: see terraform/README.md). Rolled back automatically when the deployment fails or when
# one of the API alarms fires during it.

module "grpc_blue_green" {
  source = "../blue_green"

  name_prefix               = local.name_prefix
  global_name_prefix        = local.global_name_prefix
  cluster_name              = module.cluster.cluster_name
  service_name              = module.grpc.service_name
  service_name_short        = "grpc"
  production_listener_arn   = module.load_balancer.listener_arns["production"]
  test_listener_arn         = module.load_balancer.listener_arns["test"]
  target_group_names        = [module.load_balancer.target_group_names["blue"], module.load_balancer.target_group_names["green"]]
  deployment_config_name    = var.grpc_deployment_config
  wait_for_approval_minutes = var.grpc_wait_for_approval_minutes
  rollback_alarm_names      = module.monitoring.deployment_alarm_names
}
