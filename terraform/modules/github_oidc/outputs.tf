output "role_arn" {
  description = "ARN of the deploy role (GitHub environment variable AWS_DEPLOY_ROLE_ARN)."
  value       = aws_iam_role.deploy.arn
}
