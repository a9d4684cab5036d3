variable "project" {
  description = "Project name (first part of every resource name)."
  type        = string
  default     = "order-ledger"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "az_letters" {
  description = "Letters of the availability zones used, in order: zone = region + letter. The plan names the zones this account lacks in the region (Tokyo has no 1b for most accounts: [\"a\", \"c\", \"d\"])."
  type        = list(string)
  default     = ["a", "b", "c", "d"]
}

variable "image_tag" {
  description = "Image tag of the first task definitions (a commit SHA already pushed)."
  type        = string
  default     = "bootstrap"
}

variable "alert_emails" {
  description = "Alert recipients."
  type        = list(string)
  default     = []
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider in this root (once per account)."
  type        = bool
  default     = true
}

variable "alb_allowed_cidrs" {
  description = "Networks allowed to call the API (e.g. a VPN or a peered VPC)."
  type        = list(string)
  default     = []
}

variable "alb_allowed_security_group_ids" {
  description = "Security groups in this VPC allowed to call the API, by a static name."
  type        = map(string)
  default     = {}
}

variable "dr_region" {
  description = "Disaster-recovery region (null = no copies, the dev default)."
  type        = string
  default     = null
}

variable "worker_providers" {
  description = "order-worker's providers: simulated (built in) or http (worker_provider_endpoints)."
  type        = string
  default     = "simulated"
}

variable "worker_provider_endpoints" {
  description = "With worker_providers = http: inventory, payment and shipping, each { url, token = true, client_certificate = false, ca_pem = null } (see modules/platform)."
  type = map(object({
    url                = string
    token              = optional(bool, true)
    client_certificate = optional(bool, false)
    ca_pem             = optional(string)
  }))
  default = {}
}

variable "worker_provider_egress_cidrs" {
  description = "Networks of the provider services (HTTPS from order-worker)."
  type        = list(string)
  default     = []
}

variable "db_credentials_version" {
  description = "Increment to generate new database login passwords (then run the migration task and redeploy)."
  type        = number
  default     = 1
}

variable "grpc_token_version" {
  description = "Increment to generate a new worker -> order-grpc bearer token (then redeploy both; with grpc_token_accept_previous, without a window)."
  type        = number
  default     = 1
}

variable "grpc_token_accept_previous" {
  description = "Set with an increment of grpc_token_version: order-grpc also accepts the worker's previous token until an apply without it (terraform/README.md, Operations)."
  type        = bool
  default     = false
}

variable "grpc_callers" {
  description = "The services that call order-grpc besides the worker: name => { scopes = [...], token_version = 1 }. Each gets its own generated token in <prefix>/grpc/callers/<name> (output grpc_callers); terraform/README.md, step 7."
  type = map(object({
    scopes        = list(string)
    token_version = optional(number, 1)
  }))
  default = {}
}

variable "grpc_wait_for_approval_minutes" {
  description = "0 = shift order-grpc's traffic as soon as the replacement is healthy; otherwise wait up to this long for someone to continue the deployment after testing it on the test listener."
  type        = number
  default     = 0
}

variable "grpc_command_event_ids" {
  description = "How order-grpc names a command's events (ORDER_GRPC_COMMAND_EVENT_IDS): identity (the default: the same command applied again after a restore gives events of the same identity, and the worker's provider keys with them) or random (a new UUID v7 each, as releases before 2026-12-06: set it for the one deploy that upgrades from such a release, while its workers still run, then remove it; docs/operations.md, Upgrading)."
  type        = string
  default     = "identity"

  validation {
    condition     = contains(["identity", "random"], var.grpc_command_event_ids)
    error_message = "grpc_command_event_ids is identity or random."
  }
}

variable "alb_internal" {
  description = "Keep the ALB internal. false = internet-facing with WAF (needs enable_nat_gateway = true)."
  type        = bool
  default     = true
}

variable "alb_waf_rate_limit_per_5_minutes" {
  description = "Internet-facing ALB only: requests per client address and 5 minutes before WAF blocks it (the NAT addresses are not counted)."
  type        = number
  default     = 2000
}

variable "enable_nat_gateway" {
  description = "A NAT gateway for outbound internet access (required with an internet-facing ALB, and with interface_endpoints = [])."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints. Without NAT the tasks need ecr.api, ecr.dkr, logs, secretsmanager and sqs (without xray the traces are lost); with enable_nat_gateway = true, [] sends everything through NAT (terraform/README.md, cost)."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager", "xray", "ecs", "ecs-agent", "ecs-telemetry"]
  validation {
    condition     = var.enable_nat_gateway || length(setsubtract(["ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs"], var.interface_endpoints)) == 0
    error_message = "without NAT (enable_nat_gateway = false) interface_endpoints must include ecr.api, ecr.dkr, logs, secretsmanager and sqs: the tasks pull images, log, read their secrets and use SQS through them."
  }
}

variable "worker_orders_per_second_per_task" {
  description = "Orders one worker task settles per second, as `order-bench saga --latency-ms <your providers' latency>` measured it (40: 2.5 s answers); the worker scales out in task-minutes of backlog at this rate."
  type        = number
  default     = 40
  validation {
    condition     = var.worker_orders_per_second_per_task > 0
    error_message = "worker_orders_per_second_per_task must be positive."
  }
}

variable "worker_provider_timeout_ms" {
  description = "Time one provider call of order-worker may take, 1-120000 ms (ORDER_WORKER_PROVIDER_TIMEOUT_MS)."
  type        = number
  default     = 10000
  validation {
    condition     = var.worker_provider_timeout_ms == floor(var.worker_provider_timeout_ms) && var.worker_provider_timeout_ms >= 1 && var.worker_provider_timeout_ms <= 120000
    error_message = "worker_provider_timeout_ms must be a whole number of milliseconds from 1 to 120000 (what order-worker accepts; it exits at start otherwise)."
  }
}

variable "worker_concurrency" {
  description = "Messages one worker task works on at once, 1-1000 (ORDER_WORKER_CONCURRENCY); null = derived from the task's memory."
  type        = number
  default     = null
  validation {
    condition     = var.worker_concurrency == null || try(var.worker_concurrency == floor(var.worker_concurrency) && var.worker_concurrency >= 1 && var.worker_concurrency <= 1000, false)
    error_message = "worker_concurrency must be null or a whole number from 1 to 1000 (what order-worker accepts; it exits at start otherwise)."
  }
}
