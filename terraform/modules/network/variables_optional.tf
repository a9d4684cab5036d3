variable "az_count" {
  description = "Number of availability zones (at least 2: RDS subnet groups and the ALB need two)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "az_letters" {
  description = "Zone letters to use (the first az_count of them): zone = region + letter; the subnets take the zones in alphabetical order."
  type        = list(string)
  default     = ["a", "b", "c", "d"]

  validation {
    condition     = length(var.az_letters) >= var.az_count && length(distinct(var.az_letters)) == length(var.az_letters) && alltrue([for l in var.az_letters : can(regex("^[a-z]$", l))])
    error_message = "az_letters must hold at least az_count different letters a-z (one each: \"a\", \"c\", ...)."
  }
}

variable "enable_nat_gateway" {
  description = "Create NAT gateway(s) for outbound internet access from the private subnets."
  type        = bool
  default     = false
}

variable "single_nat_gateway" {
  description = "With NAT enabled: one shared NAT gateway (cheap) instead of one per AZ (resilient)."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints (service name suffixes)."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager", "xray", "ecs", "ecs-agent", "ecs-telemetry"]
}

variable "endpoint_az_count" {
  description = "Number of AZs that get an endpoint network interface (null = all). Each one costs per hour; dev uses 1."
  type        = number
  default     = null
}

variable "flow_log_traffic_type" {
  description = "Traffic recorded by the VPC flow log: ACCEPT, REJECT or ALL."
  type        = string
  default     = "REJECT"
}

variable "flow_log_retention_days" {
  description = "Retention of the flow-log log group, in days."
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
