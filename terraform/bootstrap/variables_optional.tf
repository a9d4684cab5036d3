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
