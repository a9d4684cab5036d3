output "application_name" {
  description = "CodeDeploy application (GitHub environment variable CODEDEPLOY_APPLICATION)."
  value       = aws_codedeploy_app.this.name
}

output "deployment_group_name" {
  description = "CodeDeploy deployment group (GitHub environment variable CODEDEPLOY_DEPLOYMENT_GROUP)."
  value       = aws_codedeploy_deployment_group.this.deployment_group_name
}

output "application_arn" {
  description = "ARN of the CodeDeploy application."
  value       = aws_codedeploy_app.this.arn
}

output "deployment_group_arn" {
  description = "ARN of the CodeDeploy deployment group."
  value       = aws_codedeploy_deployment_group.this.arn
}

output "rollback_alarm_names" {
  description = "Alarms that roll a deployment back."
  value       = var.rollback_alarm_names
}

output "deployment_ready_option" {
  description = "What a deployment does once the replacement is healthy: CONTINUE_DEPLOYMENT at once, or STOP_DEPLOYMENT unless someone continues it within wait_time_in_minutes."
  value = {
    action_on_timeout    = one(one(aws_codedeploy_deployment_group.this.blue_green_deployment_config).deployment_ready_option).action_on_timeout
    wait_time_in_minutes = one(one(aws_codedeploy_deployment_group.this.blue_green_deployment_config).deployment_ready_option).wait_time_in_minutes
  }
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.codedeploy.name]
}
