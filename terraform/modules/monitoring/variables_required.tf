variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`: topic `<prefix>-alerts`, alarms `<prefix>-<alarm>`."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the SNS topic."
  type        = string
}

variable "app_metrics_namespace" {
  description = "CloudWatch namespace of the application metrics (log metric filters and the collector's EMF)."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster name (dimension ClusterName)."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster ARN (EventBridge filters)."
  type        = string
}

variable "service_names" {
  description = "ECS service names by role: grpc, projector, worker."
  type        = map(string)
}

variable "grpc_log_group_name" {
  description = "Log group of order-grpc (ApiErrorCount filter)."
  type        = string
}

variable "worker_log_group_name" {
  description = "Log group of order-worker (WorkerFailedCount filter)."
  type        = string
}

variable "queue_name" {
  description = "Name of the orders queue."
  type        = string
}

variable "dlq_name" {
  description = "Name of the dead-letter queue."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer."
  type        = string
}

variable "db_identifier" {
  description = "RDS instance identifier."
  type        = string
}
