variable "backup_retention_days" {
  description = "Days of replicated automated backups kept in the DR region (point-in-time restore window there)."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
