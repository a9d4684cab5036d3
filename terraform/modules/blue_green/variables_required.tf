variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster of the service."
  type        = string
}

variable "service_name" {
  description = "ECS service deployed blue/green (its deployment controller must be CODE_DEPLOY); also the CodeDeploy application and deployment group name."
  type        = string
}

variable "service_name_short" {
  description = "Short name of the service in the CodeDeploy role name (e.g. grpc)."
  type        = string
}

variable "production_listener_arn" {
  description = "ALB listener of production traffic."
  type        = string
}

variable "test_listener_arn" {
  description = "ALB listener of test traffic (the replacement task set before the shift)."
  type        = string
}

variable "target_group_names" {
  description = "The two target groups the deployments alternate between (the first is live at creation)."
  type        = list(string)

  validation {
    condition     = length(var.target_group_names) == 2
    error_message = "blue/green needs exactly two target groups."
  }
}
