variable "max_receive_count" {
  description = "Receives after which SQS moves a message to the DLQ."
  type        = number
  default     = 10
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the orders queue (the worker extends it while it works)."
  type        = number
  default     = 60
}

variable "retention_seconds" {
  description = "Message retention of the orders queue (default 4 days)."
  type        = number
  default     = 345600
}

variable "dlq_retention_seconds" {
  description = "Message retention of the DLQ (default 14 days, the maximum)."
  type        = number
  default     = 1209600
}

variable "tags" {
  description = "Extra tags for every resource of the module."
  type        = map(string)
  default     = {}
}
