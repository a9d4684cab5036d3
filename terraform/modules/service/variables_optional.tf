variable "binary" {
  description = "Binary in /usr/local/bin used by the container health check (default: service_name)."
  type        = string
  default     = null
}

variable "command" {
  description = "Container command (arguments after the binary); null keeps the image's default."
  type        = list(string)
  default     = null
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 256
}

variable "memory" {
  description = "Task memory, MiB."
  type        = number
  default     = 512
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (must match the images CI builds)."
  type        = string
  default     = "X86_64"
}

variable "desired_count" {
  description = "Initial number of tasks (afterwards Application Auto Scaling owns it)."
  type        = number
  default     = 1
}

variable "capacity_provider" {
  description = "FARGATE or FARGATE_SPOT."
  type        = string
  default     = "FARGATE"
}

variable "grpc_port" {
  description = "gRPC port of the container (null for services without a gRPC server): ORDER_GRPC_ADDR."
  type        = number
  default     = null

  validation {
    condition     = var.grpc_port == null || try(var.grpc_port == floor(var.grpc_port) && var.grpc_port >= 1 && var.grpc_port <= 65535, false)
    error_message = "grpc_port must be null or a whole number from 1 to 65535 (a port of ORDER_GRPC_ADDR)."
  }
}

variable "environment" {
  description = "Extra plain environment variables (secrets go to var.secrets)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables read from Secrets Manager: name => { secret_arn, json_key (null = whole secret), version_stage (null = AWSCURRENT; AWSPREVIOUS: the value before the last one put) }."
  type = map(object({
    secret_arn    = string
    json_key      = optional(string)
    version_stage = optional(string)
  }))
  default = {}
}

variable "task_role_statements" {
  description = "IAM statements of the application's task role (least privilege: name every resource)."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
  }))
  default = []
}

variable "load_balancer" {
  description = "ALB target group to register the gRPC port with, and the listeners that use it (the service waits for them); null = not behind the ALB."
  type = object({
    target_group_arn = string
    listener_arns    = list(string)
  })
  default = null
}

variable "deployment_controller" {
  description = "ECS (rolling updates with the circuit breaker) or CODE_DEPLOY (blue/green by CodeDeploy; needs load_balancer, excludes Service Connect)."
  type        = string
  default     = "ECS"

  validation {
    condition     = contains(["ECS", "CODE_DEPLOY"], var.deployment_controller)
    error_message = "deployment_controller must be ECS or CODE_DEPLOY."
  }

  validation {
    condition     = var.deployment_controller == "ECS" || (var.load_balancer != null && var.service_connect == null)
    error_message = "a CODE_DEPLOY (blue/green) service needs load_balancer and cannot use Service Connect (ECS does not support it with CodeDeploy)."
  }
}

variable "service_connect" {
  description = "Service Connect: namespace, and whether this service serves (server = true exposes the gRPC port as `<service_name>:<grpc_port>`)."
  type = object({
    namespace_arn = string
    server        = bool
  })
  default = null
}

variable "ingress_rules" {
  description = "Ingress to the tasks: name => { security_group_id, port, description }."
  type = map(object({
    security_group_id = string
    port              = number
    description       = string
  }))
  default = {}
}

variable "egress_rules" {
  description = "Egress from the tasks: name => { port, description, and one of cidr_ipv4 / prefix_list_id / security_group_id }."
  type = map(object({
    port              = number
    description       = string
    cidr_ipv4         = optional(string)
    prefix_list_id    = optional(string)
    security_group_id = optional(string)
  }))
  default = {}
}

variable "health_check_path" {
  description = "Admin path probed by the container health check (liveness)."
  type        = string
  default     = "/healthz"
}

variable "stop_timeout_seconds" {
  description = "Time between SIGTERM and SIGKILL, at most 120 (Fargate's limit): the binary's shutdown grace (ORDER_SHUTDOWN_GRACE_SECONDS, 30 by default; for order-worker the longer of it and ORDER_WORKER_WAIT_SECONDS, 20 by default, as a receive under way is let finish) plus at least 10 s for what follows it (the trace flush, the pool close)."
  type        = number
  default     = 45

  validation {
    condition     = var.stop_timeout_seconds == floor(var.stop_timeout_seconds) && var.stop_timeout_seconds >= 1 && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds must be a whole number of seconds from 1 to 120 (Fargate's limit)."
  }
}

variable "rust_log" {
  description = "RUST_LOG filter."
  type        = string
  default     = "info"
}

variable "otel_collector" {
  description = "OpenTelemetry collector sidecar (null = none): image, its pull-through repository ARN, the CloudWatch namespace of the metrics, scrape interval."
  type = object({
    image                   = string
    repository_arn          = string
    metrics_namespace       = string
    scrape_interval_seconds = optional(number, 30)
  })
  default = null
}

variable "log_retention_days" {
  description = "Retention of the service's log group, days."
  type        = number
  default     = 30
}

variable "metrics_log_retention_days" {
  description = "Retention of the collector's EMF log group, days."
  type        = number
  default     = 3
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
