output "name_prefix" {
  description = "`<project>-<env>`, the prefix of every name."
  value       = local.name_prefix
}

output "alb_dns_name" {
  description = "DNS name of the ALB: point the API's DNS record (matching the certificate) at it."
  value       = module.load_balancer.dns_name
}

output "ecr_repository_urls" {
  description = "ECR repository URL by image."
  value       = module.ecr.repository_urls
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = module.cluster.cluster_name
}

output "service_names" {
  description = "ECS service names."
  value = {
    order-grpc      = module.grpc.service_name
    order-projector = module.projector.service_name
    order-worker    = module.worker.service_name
  }
}

output "queue_urls" {
  description = "Orders queue and DLQ URLs."
  value = {
    orders = module.queue.queue_url
    dlq    = module.queue.dlq_url
  }
}

output "database_address" {
  description = "Host name of the database."
  value       = module.database.address
}

output "database_login_secret_arns" {
  description = "Secrets of the database login users (migrator, grpc, projector)."
  value       = module.database.login_secret_arns
}

output "alerts_topic_arn" {
  description = "SNS topic of every alarm and ECS event."
  value       = module.monitoring.alerts_topic_arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.monitoring.dashboard_name
}

output "deploy_role_arn" {
  description = "Role the deploy workflow assumes through GitHub OIDC."
  value       = module.github_oidc.role_arn
}

output "github_environment_variables" {
  description = "Variables to set on the GitHub environment of this environment (Settings > Environments) for .github/workflows/deploy.yml."
  value = {
    AWS_REGION               = data.aws_region.current.name
    AWS_DEPLOY_ROLE_ARN      = module.github_oidc.role_arn
    ECR_REPOSITORY_PREFIX    = local.name_prefix
    ECS_CLUSTER              = module.cluster.cluster_name
    ECS_SERVICE_PREFIX       = local.name_prefix
    MIGRATION_TASK_FAMILY    = module.migration.task_definition_family
    MIGRATION_SUBNETS        = join(",", module.network.private_subnet_ids)
    MIGRATION_SECURITY_GROUP = module.migration.security_group_id
    MIGRATION_LOG_GROUP      = module.migration.log_group_name
    CODEDEPLOY_APPLICATION   = module.grpc_blue_green.application_name
    CODEDEPLOY_GROUP         = module.grpc_blue_green.deployment_group_name
    GRPC_CONTAINER_PORT      = tostring(local.grpc_port)
  }
}

output "alb_test_listener_port" {
  description = "Port of the ALB's test listener (the replacement order-grpc task set during a blue/green deployment)."
  value       = module.load_balancer.test_listener_port
}

output "disaster_recovery" {
  description = "Where the DR copies are (null when var.dr_region is not set)."
  value = var.dr_region == null ? null : {
    region                 = var.dr_region
    backup_replication_arn = module.disaster_recovery[0].backup_replication_arn
    kms_key_arn            = module.disaster_recovery[0].dr_kms_key_arn
  }
}

output "grpc_callers" {
  description = "Each calling service of var.grpc_callers: the secret holding its bearer token (give the caller's task role secretsmanager:GetSecretValue on it, and kms:Decrypt on kms_key_arn through Secrets Manager), and the scopes order-grpc gives it."
  value = {
    for name, secret in aws_secretsmanager_secret.grpc_caller_token : name => {
      secret_arn  = secret.arn
      secret_name = secret.name
      kms_key_arn = module.kms.key_arn
      scopes      = sort(distinct(var.grpc_callers[name].scopes))
    }
  }
}

output "rotation_and_approval" {
  description = "What the runbooks change at an environment's root: the database passwords' and the worker's and callers' token versions, whether order-grpc also accepts the worker's previous token, and how long a blue/green deployment of order-grpc waits for approval (null: it does not wait)."
  value = {
    db_credentials_version         = module.database.credentials_version
    grpc_token_version             = aws_secretsmanager_secret_version.worker_grpc_token.secret_string_wo_version
    grpc_token_accept_previous     = contains(module.grpc.secret_names, "ORDER_GRPC_AUTH_TOKEN_WORKER_PREVIOUS")
    grpc_caller_token_versions     = { for name, version in aws_secretsmanager_secret_version.grpc_caller_token : name => version.secret_string_wo_version }
    grpc_wait_for_approval_minutes = module.grpc_blue_green.deployment_ready_option.wait_time_in_minutes
  }
}

output "account_wide_names" {
  description = "Names this environment holds that are unique per account (IAM roles) or worldwide (S3 buckets), not per region. A standby (var.standby) shares none of them with its primary."
  value = sort(concat(
    module.network.account_wide_names,
    module.database.account_wide_names,
    module.load_balancer.account_wide_names,
    module.grpc.account_wide_names,
    module.projector.account_wide_names,
    module.worker.account_wide_names,
    module.grpc_blue_green.account_wide_names,
    module.migration.account_wide_names,
    module.github_oidc.account_wide_names,
    module.monitoring.account_wide_names,
  ))
}

output "tuning" {
  description = "The settings terraform/README.md tells operators to tune, as the modules received them: NAT, the interface endpoints, the ALB's scheme, the worker's scaling rate (and the task-minute of backlog it gives), provider timeout and concurrency (null: derived from the task's memory)."
  value = {
    enable_nat_gateway                = length(module.network.nat_public_ips) > 0
    interface_endpoints               = module.network.interface_endpoints
    alb_internal                      = module.load_balancer.internal
    worker_orders_per_second_per_task = var.worker_orders_per_second_per_task
    worker_scale_out_task_minute      = module.scaling.worker_scale_out_task_minute
    worker_provider_timeout_ms        = tonumber(module.worker.environment["ORDER_WORKER_PROVIDER_TIMEOUT_MS"])
    worker_concurrency                = try(tonumber(module.worker.environment["ORDER_WORKER_CONCURRENCY"]), null)
  }
}

output "database_connections" {
  description = "The database's connections at a deploy's peak (docs/operations.md, \"Connections near the limit\"): order-grpc's and the projector's most tasks, doubled (blue/green keeps the original task set until its termination wait ends; a rolling update runs up to 200 %), each holding pool_size + 2 (its group-commit writer's thread); peak stays below max_connections."
  value = {
    pool_size       = var.db_pool_size
    peak            = local.database_connections_peak
    max_connections = module.database.max_connections
  }
}
