variable "worker_min_capacity" {
  description = "Minimum number of worker tasks."
  type        = number
  default     = 1
}

variable "worker_max_capacity" {
  description = "Maximum number of worker tasks."
  type        = number
  default     = 5
}

variable "worker_orders_per_second_per_task" {
  description = "Orders one worker task settles per second, as measured (order-bench saga with 2.5 s provider latency, docs/benchmarks.md): the scale-out steps are task-minutes of work at this rate."
  type        = number
  default     = 40

  validation {
    condition     = var.worker_orders_per_second_per_task > 0
    error_message = "worker_orders_per_second_per_task must be positive."
  }
}

variable "scale_out_backlog_threshold" {
  description = "Visible messages above which the worker scales out."
  type        = number
  default     = 10
}

variable "grpc_min_capacity" {
  description = "Minimum number of order-grpc tasks."
  type        = number
  default     = 1
}

variable "grpc_max_capacity" {
  description = "Maximum number of order-grpc tasks."
  type        = number
  default     = 4
}

variable "grpc_cpu_target_percent" {
  description = "Average CPU that target tracking keeps order-grpc at."
  type        = number
  default     = 60
}

variable "projector_count" {
  description = "Number of projector tasks (1 active + standbys)."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
