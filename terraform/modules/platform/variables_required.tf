variable "project" {
  description = "Project name, first part of every resource name (`<project>-<env>-...`): lower-case letters, digits and hyphens, with `<project>-<environment>` at most 19 characters (14 for prod)."
  type        = string

  # The tightest AWS limits on the names built from it: ECR's pull-through prefix
  # `<project>-<env>/ecr-public` (30) and the target group `<project>-<env>-grpc-green` (32);
  # S3 bucket names take lower case only.
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[a-z0-9]$", var.project)) && length("${var.project}-${var.environment}") <= 19
    error_message = "project must be lower-case letters, digits and hyphens (starting with a letter), and `<project>-<environment>` at most 19 characters (${var.project}-${var.environment} has ${length("${var.project}-${var.environment}")}), so that names such as `<project>-<environment>/ecr-public` (ECR's limit: 30) and `<project>-<environment>-grpc-green` (a target group's: 32) fit."
  }
}

variable "environment" {
  description = "Environment name (dev, prod); also the GitHub environment allowed to deploy it."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (same region) for the ALB's HTTPS listener."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository (`owner/name`) whose deploy workflow may assume the deploy role."
  type        = string
}

variable "api_host_name" {
  description = "Host name the ALB certificate is for (the API's DNS name); order-worker checks it when calling order-grpc through the ALB."
  type        = string
}
