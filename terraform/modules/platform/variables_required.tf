variable "project" {
  description = "Project name, first part of every resource name (`<project>-<env>-...`)."
  type        = string
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
