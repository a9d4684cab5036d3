variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster of the services."
  type        = string
}

variable "grpc_service_name" {
  description = "ECS service name of order-grpc."
  type        = string
}

variable "projector_service_name" {
  description = "ECS service name of order-projector."
  type        = string
}

variable "worker_service_name" {
  description = "ECS service name of order-worker."
  type        = string
}

variable "queue_name" {
  description = "Name of the orders queue (backlog metric)."
  type        = string
}

variable "alarm_topic_arn" {
  description = "The `<prefix>-alerts` topic: the scaling alarms notify it too."
  type        = string
}
