output "repository_urls" {
  description = "Repository URL by image name."
  value       = { for k, r in local.repositories : k => r.url }
}

output "repository_arns" {
  description = "Repository ARN by image name."
  value       = { for k, r in local.repositories : k => r.arn }
}

output "cached_repository_urls" {
  description = "Pull-through cache repository URL by upstream path."
  value       = { for k, r in aws_ecr_repository.cached : k => r.repository_url }
}

output "cached_repository_arns" {
  description = "Pull-through cache repository ARN by upstream path."
  value       = { for k, r in aws_ecr_repository.cached : k => r.arn }
}

output "pull_through_prefix" {
  description = "Repository prefix of the ECR Public pull-through cache rule."
  value       = aws_ecr_pull_through_cache_rule.ecr_public.ecr_repository_prefix
}
