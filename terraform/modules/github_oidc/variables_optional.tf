variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (only one per account may exist)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
