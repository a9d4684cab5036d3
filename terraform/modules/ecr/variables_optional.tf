variable "keep_last_images" {
  description = "Number of images kept per repository."
  type        = number
  default     = 30
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images are deleted."
  type        = number
  default     = 7
}

variable "force_delete" {
  description = "Allow `terraform destroy` to delete repositories that still hold images (dev only)."
  type        = bool
  default     = false
}

variable "pull_through_prefix" {
  description = "Repository prefix of the ECR Public pull-through cache (null = `<name_prefix>/ecr-public`; unique per account and region, 2-30 characters)."
  type        = string
  default     = null
}

variable "cached_upstream_repositories" {
  description = "ECR Public repositories (path below public.ecr.aws) served through the pull-through cache."
  type        = list(string)
  default     = ["aws-observability/aws-otel-collector"]
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}

variable "adopt_replicated_repositories" {
  description = "The repositories exist already, made by ECR replication from the primary region (a standby in the DR region): read them instead of creating them. Their lifecycle policies are still set."
  type        = bool
  default     = false
}
