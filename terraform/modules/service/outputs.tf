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

output "secret_sources" {
  description = "Where the application container's secret variables come from: name => ECS valueFrom (the secret's ARN, with :json-key:version-stage: when it names one)."
  value       = local.secret_sources
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
  description = "The graceful-shutdown budget the binary is given (ORDER_SHUTDOWN_GRACE_SECONDS, 30 when unset); stopTimeout must exceed shutdown_seconds, which counts it."
  value       = local.shutdown_grace_seconds
}

output "shutdown_seconds" {
  description = "The longest the binary takes after SIGTERM before what follows its shutdown (release, trace flush, pool close): its grace, or for order-worker the longer of its grace and its long-poll wait (ORDER_WORKER_WAIT_SECONDS, 20 when unset), which it lets finish. stopTimeout must exceed it by 10 s."
  value       = local.shutdown_seconds
}
