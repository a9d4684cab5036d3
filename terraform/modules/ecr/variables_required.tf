variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`; repositories are `<prefix>/<image>`."
  type        = string
}

variable "repositories" {
  description = "Image names, one repository each (order-grpc, order-projector, order-worker, order-dbinit)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the images."
  type        = string
}
