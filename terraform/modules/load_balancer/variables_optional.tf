variable "internal" {
  description = "Internal load balancer (callers inside the VPC or peered networks). false = internet-facing, and then a WAF web ACL is attached."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the listeners (production and test)."
  type        = list(string)
  default     = []
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to reach the listeners, by a static name (e.g. order-worker)."
  type        = map(string)
  default     = {}
}

variable "late_allowed_cidrs" {
  description = "Further networks allowed on the production listener whose values are known only after apply (e.g. NAT gateway addresses)."
  type        = list(string)
  default     = []
}

variable "late_allowed_cidrs_description" {
  description = "What var.late_allowed_cidrs are (rule descriptions)."
  type        = string
  default     = "the NAT gateways"
}

variable "target_port" {
  description = "gRPC port of the tasks."
  type        = number
  default     = 50051
}

variable "test_listener_port" {
  description = "Port of the test listener (replacement task set during a blue/green deployment)."
  type        = number
  default     = 8443
}

variable "health_check_path" {
  description = "gRPC path the target groups probe; it must answer a non-zero grpc-status while the task is not ready."
  type        = string
  default     = "/AWS.ALB/healthcheck"
}

variable "ssl_policy" {
  description = "TLS policy of the listeners."
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

variable "waf_rate_limit_per_5_minutes" {
  description = "Internet-facing only: requests per client address and 5 minutes before WAF blocks it."
  type        = number
  default     = 2000
}

variable "waf_log_retention_days" {
  description = "Internet-facing only: retention of the WAF log group, days."
  type        = number
  default     = 30
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
