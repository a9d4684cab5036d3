variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "subnet_ids" {
  description = "Isolated subnets (at least two AZs) for the DB subnet group."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key for storage, Performance Insights, the master secret, the login secrets and the log groups."
  type        = string
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect on 5432, by a static name (e.g. order-grpc)."
  type        = map(string)
}
