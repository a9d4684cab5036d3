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

variable "alb_allowed_cidrs" {
  description = "Networks allowed to call the API (e.g. a VPN or a peered VPC)."
  type        = list(string)
  default     = []
}

variable "alb_allowed_security_group_ids" {
  description = "Security groups in this VPC allowed to call the API, by a static name."
  type        = map(string)
  default     = {}
}

variable "dr_region" {
  description = "Disaster-recovery region (null = no copies, the dev default)."
  type        = string
  default     = null
}
