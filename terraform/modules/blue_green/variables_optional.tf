variable "deployment_config_name" {
  description = "How traffic shifts: CodeDeployDefault.ECSAllAtOnce, ECSCanary10Percent5Minutes, ECSLinear10PercentEvery1Minutes, ..."
  type        = string
  default     = "CodeDeployDefault.ECSAllAtOnce"
}

variable "rollback_alarm_names" {
  description = "CloudWatch alarms that stop and roll back a deployment when they fire."
  type        = list(string)
  default     = []
}

variable "wait_for_approval_minutes" {
  description = "0 = shift production traffic as soon as the replacement is healthy; otherwise wait up to this long for someone to continue the deployment (after testing on the test listener), then stop it."
  type        = number
  default     = 0
}

variable "termination_wait_minutes" {
  description = "Minutes the previous task set keeps running after a successful shift (instant roll back window)."
  type        = number
  default     = 5
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
