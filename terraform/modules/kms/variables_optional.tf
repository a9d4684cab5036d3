variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion takes effect."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Extra tags for the key (the provider adds the default tags)."
  type        = map(string)
  default     = {}
}
