variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`; also the cluster name."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the Container Insights log group."
  type        = string
}
