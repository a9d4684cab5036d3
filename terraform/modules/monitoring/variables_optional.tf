variable "alert_emails" {
  description = "Email addresses subscribed to the alerts topic (each must confirm)."
  type        = list(string)
  default     = []
}

variable "projector_metrics_service" {
  description = "Value of the `service` dimension the collector puts on the projector's metrics."
  type        = string
  default     = "order-projector"
}

variable "api_error_threshold" {
  description = "api-error-spike: ERROR lines per minute."
  type        = number
  default     = 5
}

variable "projector_lag_threshold_seconds" {
  description = "projector-lag: seconds behind the log."
  type        = number
  default     = 60
}

variable "projector_lag_periods" {
  description = "projector-lag: consecutive minutes above the threshold."
  type        = number
  default     = 5
}

variable "backlog_sustained_threshold" {
  description = "queue-backlog-high-sustained: visible messages."
  type        = number
  default     = 100
}

variable "backlog_sustained_periods" {
  description = "queue-backlog-high-sustained: consecutive minutes above the threshold (longer than a scale-out takes)."
  type        = number
  default     = 15
}

variable "alb_5xx_threshold" {
  description = "alb-5xx: ALB-generated 5xx per minute."
  type        = number
  default     = 5
}

variable "tg_5xx_threshold" {
  description = "tg-5xx: target 5xx per minute."
  type        = number
  default     = 5
}

variable "latency_p95_threshold_seconds" {
  description = "alb-latency-p95: seconds."
  type        = number
  default     = 0.5
}

variable "rds_cpu_threshold" {
  description = "rds-cpu-high: percent."
  type        = number
  default     = 80
}

variable "rds_free_storage_threshold_gib" {
  description = "rds-free-storage-low: GiB."
  type        = number
  default     = 2
}

variable "queue_oldest_message_age_threshold_seconds" {
  description = "queue-oldest-message-age: seconds the oldest orders message may wait (messages are handled in seconds; a stuck order group or a stopped worker shows here first)."
  type        = number
  default     = 600
}

variable "ecs_cpu_threshold" {
  description = "ecs-cpu-high-<service>: average CPU percent of a service in 8 of 10 minutes."
  type        = number
  default     = 85
}

variable "ecs_memory_threshold" {
  description = "ecs-memory-high-<service>: average memory percent of a service in 8 of 10 minutes."
  type        = number
  default     = 85
}

variable "db_max_connections" {
  description = "The database's max_connections (rds-connections-high fires at rds_connections_percent of it)."
  type        = number
  default     = 80
}

variable "rds_connections_percent" {
  description = "rds-connections-high: percent of max_connections in use for 5 minutes."
  type        = number
  default     = 80
}

variable "extra_alarm_arns_for_dashboard" {
  description = "Further alarms shown in the dashboard's alarm panel (e.g. the scaling alarms)."
  type        = list(string)
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}

variable "worker_metrics_service" {
  description = "Value of the `service` dimension the collector puts on the worker's metrics."
  type        = string
  default     = "order-worker"
}

variable "worker_providers" {
  description = "Providers whose circuit breaker gets a worker-circuit-open alarm."
  type        = list(string)
  default     = ["inventory", "payment", "shipping"]
}

variable "worker_breaker_threshold_hint" {
  description = "ORDER_WORKER_BREAKER_THRESHOLD as deployed (only for the alarm's description)."
  type        = number
  default     = 5
}

variable "db_replica_identifier" {
  description = "RDS identifier of the read replica (null: none, no replica-lag alarm)."
  type        = string
  default     = null
}

variable "db_replica_lag_threshold_seconds" {
  description = "replica-lag: seconds the read replica may be behind (ReplicaLag) for 5 minutes."
  type        = number
  default     = 30
}

variable "global_name_prefix" {
  description = "Prefix of the names that are unique per account (the dashboard: CloudWatch dashboards are global) rather than per region; null = name_prefix. A standby of the environment in a second region sets `<name_prefix>-<region>` so that both can exist in one account."
  type        = string
  default     = null
}
