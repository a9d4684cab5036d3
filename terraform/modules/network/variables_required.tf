variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC (a /16: it is cut into /20 subnets)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log log group."
  type        = string
}
