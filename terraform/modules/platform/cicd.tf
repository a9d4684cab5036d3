module "github_oidc" {
  source = "../github_oidc"

  name_prefix          = local.name_prefix
  global_name_prefix   = local.global_name_prefix
  github_repository    = var.github_repository
  github_environment   = var.environment
  create_oidc_provider = var.create_github_oidc_provider

  ecr_repository_arns = [for image in local.images : module.ecr.repository_arns[image]]
  cluster_arn         = module.cluster.cluster_arn
  cluster_name        = module.cluster.cluster_name
  service_arns = [
    module.grpc.service_arn,
    module.projector.service_arn,
    module.worker.service_arn,
  ]
  migration_task_family = module.migration.task_definition_family
  task_definition_families = [
    module.grpc.task_definition_family,
    module.projector.task_definition_family,
    module.worker.task_definition_family,
    module.migration.task_definition_family,
  ]
  codedeploy = {
    application_arn      = module.grpc_blue_green.application_arn
    deployment_group_arn = module.grpc_blue_green.deployment_group_arn
  }
  migration_log_group_arn = module.migration.log_group_arn
  pass_role_arns = [
    module.grpc.execution_role_arn,
    module.grpc.task_role_arn,
    module.projector.execution_role_arn,
    module.projector.task_role_arn,
    module.worker.execution_role_arn,
    module.worker.task_role_arn,
    module.migration.execution_role_arn,
    module.migration.task_role_arn,
  ]
}
