variable "egress_rules" {
  description = "Egress from the task: name => { port, description, and one of cidr_ipv4 / prefix_list_id / security_group_id }."
  type = map(object({
    port              = number
    description       = string
    cidr_ipv4         = optional(string)
    prefix_list_id    = optional(string)
    security_group_id = optional(string)
  }))
  default = {}
}

variable "rds_ca_bundle_path" {
  description = "Path of the RDS CA bundle inside both images (deploy/Dockerfile puts it there)."
  type        = string
  default     = "/etc/ssl/certs/rds-global-bundle.pem"
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (must match the images CI builds)."
  type        = string
  default     = "X86_64"
}

variable "log_retention_days" {
  description = "Retention of the migration log group, days."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}

variable "global_name_prefix" {
  description = "Prefix of the names that are unique per account (IAM roles) or worldwide (S3 buckets) rather than per region; null = name_prefix. A standby of the environment in a second region sets `<name_prefix>-<region>` so that both can exist in one account."
  type        = string
  default     = null
}
