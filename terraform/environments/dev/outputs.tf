output "alb_dns_name" {
  description = "DNS name of the ALB."
  value       = module.platform.alb_dns_name
}

output "ecr_repository_urls" {
  description = "ECR repository URL by image."
  value       = module.platform.ecr_repository_urls
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.platform.cluster_name
}

output "service_names" {
  description = "ECS services."
  value       = module.platform.service_names
}

output "queue_urls" {
  description = "Orders queue and DLQ."
  value       = module.platform.queue_urls
}

output "database_address" {
  description = "Database host."
  value       = module.platform.database_address
}

output "alerts_topic_arn" {
  description = "Alerts topic."
  value       = module.platform.alerts_topic_arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.platform.dashboard_name
}

output "deploy_role_arn" {
  description = "GitHub OIDC deploy role."
  value       = module.platform.deploy_role_arn
}

output "github_environment_variables" {
  description = "Set these on the GitHub environment of the same name."
  value       = module.platform.github_environment_variables
}

output "alb_test_listener_port" {
  description = "Test listener of the ALB (blue/green: the replacement order-grpc tasks)."
  value       = module.platform.alb_test_listener_port
}

output "disaster_recovery" {
  description = "Region and ARNs of the disaster-recovery copies (null without dr_region)."
  value       = module.platform.disaster_recovery
}

output "grpc_callers" {
  description = "Each calling service of grpc_callers: the secret with its bearer token, the KMS key its task role must be allowed to decrypt with, and its scopes."
  value       = module.platform.grpc_callers
}

output "database_connections" {
  description = "The database's connections at a deploy's peak against max_connections (docs/operations.md, \"Connections near the limit\")."
  value       = module.platform.database_connections
}
