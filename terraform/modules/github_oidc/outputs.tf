output "role_arn" {
  description = "ARN of the deploy role (GitHub environment variable AWS_DEPLOY_ROLE_ARN)."
  value       = aws_iam_role.deploy.arn
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.deploy.name]
}
