variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "service_name" {
  description = "Name of the service and of its container (order-grpc, order-projector, order-worker)."
  type        = string
}

variable "image" {
  description = "Image of the application container, `<repository url>:<tag>` (the initial one: CI replaces it)."
  type        = string
}

variable "admin_port" {
  description = "Port of the admin HTTP server (/healthz, /readyz, /metrics): ORDER_ADMIN_ADDR."
  type        = number

  validation {
    condition     = var.admin_port == floor(var.admin_port) && var.admin_port >= 1 && var.admin_port <= 65535
    error_message = "admin_port must be a whole number from 1 to 65535 (a port of ORDER_ADMIN_ADDR)."
  }
}

variable "cluster_arn" {
  description = "ECS cluster that runs the service."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the task security group."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key of the log groups and of the secrets the service reads."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the execution role may pull from (the service's own)."
  type        = list(string)
}
