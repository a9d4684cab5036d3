variable "project" {
  description = "Project name; the bucket is `<project>-tfstate-<account id>`."
  type        = string
  default     = "order-ledger"
}

variable "region" {
  description = "Region of the state bucket (the environments' backend.tf says the same)."
  type        = string
  default     = "eu-west-1"
}

variable "standby" {
  description = "A second bootstrap, in the disaster-recovery region, for the state of a standby environment there (docs/operations.md, \"Region lost\"): the bucket is `<project>-tfstate-<region>-<account id>`. Apply it with its own local state (another working copy, or -state=standby.tfstate)."
  type        = bool
  default     = false
}
