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
  description = "Create the account's GitHub OIDC provider in this root (false when dev, in the same account, already did)."
  type        = bool
  default     = false
}

variable "alb_allowed_cidrs" {
  description = "Networks allowed to call the API."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}
