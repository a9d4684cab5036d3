variable "engine_version" {
  description = "PostgreSQL version (major, or major.minor); the parameter group family follows the major."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "database_name" {
  description = "Name of the database created with the instance."
  type        = string
  default     = "orders"
}

variable "master_username" {
  description = "Master user (its password is managed by RDS in Secrets Manager)."
  type        = string
  default     = "orders_admin"
}

variable "allocated_storage_gb" {
  description = "Initial storage, GiB."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling, GiB."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "Run a synchronous standby in a second AZ."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse deletion of the instance (lift it with an apply before a destroy)."
  type        = bool
  default     = true
}

variable "final_snapshot" {
  description = "Take a final snapshot, `<name_prefix>-db-final`, when the instance is deleted (whatever deletion_protection was before the destroy). RDS refuses the deletion while a snapshot of that name exists."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time restore window)."
  type        = number
  default     = 7
}

variable "apply_immediately" {
  description = "Apply modifications now instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "performance_insights_retention_days" {
  description = "Performance Insights retention (7 days is free)."
  type        = number
  default     = 7
}

variable "monitoring_interval_seconds" {
  description = "Enhanced monitoring interval, seconds."
  type        = number
  default     = 60
}

variable "statement_timeout_ms" {
  description = "Server-wide statement_timeout, ms."
  type        = number
  default     = 60000
}

variable "idle_in_transaction_timeout_ms" {
  description = "idle_in_transaction_session_timeout, ms."
  type        = number
  default     = 60000
}

variable "log_min_duration_statement_ms" {
  description = "Log statements slower than this, ms."
  type        = number
  default     = 500
}

variable "max_connections" {
  description = "max_connections of the server; keep it at or below RDS's default for the instance class (DBInstanceClassMemory/9531392: ~85 for db.t4g.micro, ~850 for db.m7g.large)."
  type        = number
  default     = 80
}

variable "log_retention_days" {
  description = "Retention of the exported PostgreSQL logs, days."
  type        = number
  default     = 30
}

variable "secret_recovery_window_days" {
  description = "Days a deleted login secret can still be restored (0 = immediately, dev only)."
  type        = number
  default     = 7
}

variable "credentials_version" {
  description = "Version of the generated login passwords; increment to rotate them."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}

variable "read_replica" {
  description = "Run a read replica (asynchronous) for order-grpc's reads; its URL is the grpc login secret's read_url. Turning it on or off writes the login secrets again (a rotation: run the migration task and redeploy)."
  type        = bool
  default     = false
}

variable "read_replica_instance_class" {
  description = "Instance class of the read replica (null: the primary's)."
  type        = string
  default     = null
}

variable "global_name_prefix" {
  description = "Prefix of the names that are unique per account (IAM roles) or worldwide (S3 buckets) rather than per region; null = name_prefix. A standby of the environment in a second region sets `<name_prefix>-<region>` so that both can exist in one account."
  type        = string
  default     = null
}

variable "restore" {
  description = <<-EOT
    Create the instance by a point-in-time restore instead of empty (null: empty). The source is
    one of source_automated_backups_arn (replicated automated backups: a standby in the DR
    region) or source_db_instance_identifier (an instance of this region); restore_time is an
    RFC 3339 UTC time, null for the latest restorable time. Read at creation only.
  EOT
  type = object({
    source_automated_backups_arn  = optional(string)
    source_db_instance_identifier = optional(string)
    restore_time                  = optional(string)
  })
  # checked where it is set: the platform's db_restore
  default = null
}
