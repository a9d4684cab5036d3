variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`; images `<prefix>/*` are replicated."
  type        = string
}

variable "dr_region" {
  description = "Region of the copies (must differ from the primary region and support RDS automated-backup replication from it)."
  type        = string
}

variable "db_instance_arn" {
  description = "ARN of the RDS instance whose automated backups are replicated."
  type        = string
}
