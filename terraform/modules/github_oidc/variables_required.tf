variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "github_repository" {
  description = "Repository allowed to deploy, `owner/name`."
  type        = string
}

variable "github_environment" {
  description = "GitHub environment whose jobs may assume the role (its protection rules gate the deploy)."
  type        = string
}

variable "ecr_repository_arns" {
  description = "Repositories CI pushes images to."
  type        = list(string)
}

variable "cluster_arn" {
  description = "ECS cluster of the services and of the migration task."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster."
  type        = string
}

variable "service_arns" {
  description = "The ECS services CI may update (order-grpc, order-projector, order-worker)."
  type        = list(string)
}

variable "migration_task_family" {
  description = "Task definition family of the migration job (the only task CI may run)."
  type        = string
}

variable "migration_log_group_arn" {
  description = "Log group of the migration job."
  type        = string
}

variable "pass_role_arns" {
  description = "Exactly the execution and task roles of the services and of the migration job."
  type        = list(string)
}

variable "task_definition_families" {
  description = "Task definition families CI registers revisions of (services and migration): the only ones it may tag."
  type        = list(string)
}
