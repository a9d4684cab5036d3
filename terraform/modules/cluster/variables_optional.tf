variable "container_insights" {
  description = "Container Insights mode: enabled or enhanced."
  type        = string
  default     = "enabled"
}

variable "log_retention_days" {
  description = "Retention of the Container Insights performance log group, days."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
