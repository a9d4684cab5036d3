# Both wait for the capacity providers: a service created before FARGATE / FARGATE_SPOT are
# attached is refused ("not associated with the cluster"), and the provider does not retry it.
output "cluster_arn" {
  description = "ARN of the ECS cluster (once its capacity providers are attached)."
  value       = aws_ecs_cluster.this.arn
  depends_on  = [aws_ecs_cluster_capacity_providers.this]
}

output "cluster_name" {
  description = "Name of the ECS cluster (once its capacity providers are attached)."
  value       = aws_ecs_cluster_capacity_providers.this.cluster_name
}

output "service_connect_namespace_arn" {
  description = "ARN of the Service Connect (Cloud Map HTTP) namespace."
  value       = aws_service_discovery_http_namespace.this.arn
}
