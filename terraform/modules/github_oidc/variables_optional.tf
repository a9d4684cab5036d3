variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (only one per account may exist)."
  type        = bool
  default     = false
}

variable "codedeploy" {
  description = "CodeDeploy application and deployment group CI starts blue/green deployments in (null = none)."
  type = object({
    application_arn      = string
    deployment_group_arn = string
  })
  default = null
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}

variable "global_name_prefix" {
  description = "Prefix of the names that are unique per account (IAM roles) or worldwide (S3 buckets) rather than per region; null = name_prefix. A standby of the environment in a second region sets `<name_prefix>-<region>` so that both can exist in one account."
  type        = string
  default     = null
}
