variable "project" {
  description = "Project name (first part of every resource name)."
  type        = string
  default     = "order-ledger"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "image_tag" {
  description = "Image tag of the first task definitions (a commit SHA already pushed)."
  type        = string
  default     = "bootstrap"
}

variable "alert_emails" {
  description = "Alert recipients."
  type        = list(string)
  default     = []
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider in this root (once per account)."
  type        = bool
  default     = true
}
