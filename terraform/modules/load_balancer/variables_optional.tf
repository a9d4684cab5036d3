variable "internal" {
  description = "Internal load balancer (callers inside the VPC or peered networks only)."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the HTTPS listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "target_port" {
  description = "gRPC port of the tasks."
  type        = number
  default     = 50051
}

variable "ssl_policy" {
  description = "TLS policy of the listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "idle_timeout_seconds" {
  description = "Idle timeout of connections, seconds (long enough for streaming RPCs)."
  type        = number
  default     = 900
}

variable "deletion_protection" {
  description = "Refuse deletion of the load balancer; also keeps the log bucket from being force-destroyed."
  type        = bool
  default     = true
}

variable "access_log_retention_days" {
  description = "Days the access logs are kept."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
