output "task_definition_family" {
  description = "Task definition family of the migration job (CI runs the latest revision)."
  value       = aws_ecs_task_definition.this.family
}

output "security_group_id" {
  description = "Security group of the migration task (run it with this group and the private subnets)."
  value       = aws_security_group.this.id
}

output "log_group_name" {
  description = "Log group of the migration job."
  value       = aws_cloudwatch_log_group.this.name
}

output "log_group_arn" {
  description = "ARN of the migration log group."
  value       = aws_cloudwatch_log_group.this.arn
}

output "execution_role_arn" {
  description = "ARN of the execution role."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = aws_iam_role.task.arn
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.execution.name, aws_iam_role.task.name]
}
