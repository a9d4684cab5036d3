variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>` (at most 21 characters: target group names `<prefix>-grpc-green` are limited to 32)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets (or private ones for an internal ALB), at least two AZs."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener."
  type        = string
}

variable "target_security_group_id" {
  description = "Security group of the order-grpc tasks (the only egress of the ALB)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the WAF log group (internet-facing load balancers)."
  type        = string
}
