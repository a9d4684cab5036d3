output "service_name" {
  description = "Name of the ECS service (CloudWatch dimension ServiceName)."
  value       = aws_ecs_service.this.name
}

output "service_arn" {
  description = "ARN of the ECS service."
  value       = aws_ecs_service.this.id
}

output "task_definition_family" {
  description = "Task definition family (CI registers new revisions of it)."
  value       = aws_ecs_task_definition.this.family
}

output "container_name" {
  description = "Name of the application container (CI replaces its image)."
  value       = local.container
}

output "security_group_id" {
  description = "Security group of the tasks."
  value       = aws_security_group.task.id
}

output "log_group_name" {
  description = "Log group of the application container."
  value       = aws_cloudwatch_log_group.app.name
}

output "execution_role_arn" {
  description = "ARN of the execution role."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = aws_iam_role.task.arn
}

output "load_balancer_listener_arns" {
  description = "Listeners the service waited for before registering with its target group (empty when not behind the ALB)."
  value       = var.load_balancer == null ? [] : var.load_balancer.listener_arns
}

output "deployment_controller" {
  description = "ECS (rolling) or CODE_DEPLOY (blue/green)."
  value       = aws_ecs_service.this.deployment_controller[0].type
}

output "environment" {
  description = "The application container's plain environment variables (names and values; no secrets)."
  value       = var.environment
}

output "secret_names" {
  description = "The environment variables the application container reads from Secrets Manager."
  value       = sort(keys(var.secrets))
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.execution.name, aws_iam_role.task.name]
}

output "stop_timeout_seconds" {
  description = "The application container's stopTimeout: seconds between SIGTERM and SIGKILL."
  value       = var.stop_timeout_seconds
}

output "shutdown_grace_seconds" {
  description = "The graceful-shutdown budget the binary is given (ORDER_SHUTDOWN_GRACE_SECONDS, 30 when unset), which stopTimeout must exceed."
  value       = local.shutdown_grace_seconds
}
