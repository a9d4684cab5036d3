# --- network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC (/16)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones used (>= 2)."
  type        = number
  default     = 2
}

variable "az_letters" {
  description = "Letters of the zones used, in order (the first az_count): zone = region + letter. Change it where the region lacks one of a-d for this account (Tokyo: [\"a\", \"c\", \"d\"])."
  type        = list(string)
  default     = ["a", "b", "c", "d"]
}

variable "enable_nat_gateway" {
  description = "NAT for outbound internet access (not needed: AWS APIs go through VPC endpoints)."
  type        = bool
  default     = false
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs instead of one per AZ."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "AWS services the tasks reach through interface VPC endpoints (service name suffixes; each costs per AZ and hour). Without NAT the tasks need ecr.api, ecr.dkr, logs, secretsmanager and sqs (dropping xray loses the traces); with enable_nat_gateway = true it may be [] (everything through NAT)."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager", "xray", "ecs", "ecs-agent", "ecs-telemetry"]

  validation {
    condition     = var.enable_nat_gateway || length(setsubtract(["ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs"], var.interface_endpoints)) == 0
    error_message = "without NAT (enable_nat_gateway = false) interface_endpoints must include ecr.api, ecr.dkr, logs, secretsmanager and sqs: the tasks pull images, log, read their secrets and use SQS through them."
  }
}

variable "endpoint_az_count" {
  description = "AZs with an interface-endpoint network interface (null = all)."
  type        = number
  default     = null
}

variable "alb_internal" {
  description = "Internal ALB (callers in the VPC or in peered networks). false makes it internet-facing, with a WAF web ACL, and needs enable_nat_gateway (order-worker calls order-grpc through it)."
  type        = bool
  default     = true

  validation {
    condition     = var.alb_internal || var.enable_nat_gateway
    error_message = "an internet-facing ALB (alb_internal = false) needs enable_nat_gateway = true: order-worker reaches order-grpc through the ALB."
  }
}

variable "alb_waf_rate_limit_per_5_minutes" {
  description = "Internet-facing ALB only: requests per client address and 5 minutes before WAF blocks it (the system's own NAT addresses are not counted)."
  type        = number
  default     = 2000

  validation {
    condition     = var.alb_waf_rate_limit_per_5_minutes >= 10 && var.alb_waf_rate_limit_per_5_minutes <= 2000000000 && floor(var.alb_waf_rate_limit_per_5_minutes) == var.alb_waf_rate_limit_per_5_minutes
    error_message = "alb_waf_rate_limit_per_5_minutes is a whole number from 10 to 2,000,000,000 (WAF's limits)."
  }
}

variable "alb_allowed_cidrs" {
  description = "Networks allowed to call the gRPC API through the ALB (none by default)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alb_allowed_cidrs : can(cidrnetmask(c))])
    error_message = "alb_allowed_cidrs must be IPv4 CIDR blocks."
  }
}

variable "alb_allowed_security_group_ids" {
  description = "Security groups (e.g. of calling services in this VPC) allowed to call the gRPC API, by a static name."
  type        = map(string)
  default     = {}
}

variable "alb_test_listener_port" {
  description = "Port of the ALB's test listener (blue/green: the replacement task set answers there before the shift)."
  type        = number
  default     = 8443
}

# --- images and compute ----------------------------------------------------------------------

variable "image_tag" {
  description = "Image tag of the first task definitions (a commit SHA pushed before the first apply); CI deploys later ones."
  type        = string
  default     = "bootstrap"
}

variable "otel_collector_version" {
  description = "Tag of public.ecr.aws/aws-observability/aws-otel-collector served through the pull-through cache."
  type        = string
  default     = "v0.43.3"
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64, matching the images CI builds."
  type        = string
  default     = "X86_64"
}

variable "container_insights" {
  description = "Container Insights mode of the cluster: enabled or enhanced."
  type        = string
  default     = "enabled"
}

variable "grpc_cpu" {
  description = "order-grpc task CPU units."
  type        = number
  default     = 256
}

variable "grpc_memory" {
  description = "order-grpc task memory, MiB."
  type        = number
  default     = 512
}

variable "grpc_min_capacity" {
  description = "Minimum order-grpc tasks."
  type        = number
  default     = 1
}

variable "grpc_max_capacity" {
  description = "Maximum order-grpc tasks (CPU target tracking)."
  type        = number
  default     = 4
}

variable "projector_cpu" {
  description = "order-projector task CPU units."
  type        = number
  default     = 256
}

variable "projector_memory" {
  description = "order-projector task memory, MiB."
  type        = number
  default     = 512
}

variable "projector_count" {
  description = "order-projector tasks (one active per subscription, the rest standby)."
  type        = number
  default     = 1
}

variable "worker_cpu" {
  description = "order-worker task CPU units."
  type        = number
  default     = 256
}

variable "worker_memory" {
  description = "order-worker task memory, MiB."
  type        = number
  default     = 512
}

variable "worker_min_capacity" {
  description = "Minimum worker tasks."
  type        = number
  default     = 1
}

variable "worker_max_capacity" {
  description = "Maximum worker tasks (step scaling on the backlog)."
  type        = number
  default     = 5
}

variable "worker_capacity_provider" {
  description = "FARGATE or FARGATE_SPOT for the worker (it tolerates interruption: SQS redelivers)."
  type        = string
  default     = "FARGATE"
}

variable "ecr_force_delete" {
  description = "Let `terraform destroy` delete repositories that still hold images."
  type        = bool
  default     = false
}

# --- data ------------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_multi_az" {
  description = "Multi-AZ standby for the database."
  type        = bool
  default     = false
}

variable "db_read_replica" {
  description = "Run a read replica for order-grpc's queries (ORDER_GRPC_READ_DATABASE_URL), with a replica-lag alarm. Turning it on or off rotates the database logins: run the migration task and redeploy after the apply."
  type        = bool
  default     = false
}

variable "db_read_replica_instance_class" {
  description = "Instance class of the read replica (null: db_instance_class)."
  type        = string
  default     = null
}

variable "db_replica_lag_threshold_seconds" {
  description = "replica-lag alarm: the read replica this many seconds behind for 5 minutes (reads with min_position then fall back to the primary)."
  type        = number
  default     = 30
}

variable "db_allocated_storage_gb" {
  description = "Initial database storage, GiB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "Database storage autoscaling ceiling, GiB."
  type        = number
  default     = 100
}

variable "db_backup_retention_days" {
  description = "Automated backup / point-in-time restore window, days."
  type        = number
  default     = 7
}

variable "db_max_connections" {
  description = "max_connections of the database (at or below RDS's default for the class: ~85 for db.t4g.micro, ~850 for db.m7g.large); rds-connections-high fires at 80 %. Must exceed the connections of a deploy's peak (output database_connections; check database_connections_at_a_deploys_peak)."
  type        = number
  default     = 80
}

variable "db_pool_size" {
  description = "ORDER_DB_POOL_SIZE of order-grpc and the projector: the most database connections one task holds (1-1000; its group-commit writer's thread holds 2 more)."
  type        = number
  default     = 16

  validation {
    condition     = var.db_pool_size == floor(var.db_pool_size) && var.db_pool_size >= 1 && var.db_pool_size <= 1000
    error_message = "db_pool_size must be a whole number from 1 to 1000 (what order-grpc and order-projector accept; they exit at start otherwise)."
  }
}

variable "dr_region" {
  description = "Disaster-recovery region for replicated database backups and ECR images (null = no copies)."
  type        = string
  default     = null
}

variable "dr_backup_retention_days" {
  description = "Days of replicated automated backups kept in var.dr_region."
  type        = number
  default     = 7
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
  description = "During a rotation of the worker's token (grpc_token_version incremented): order-grpc also accepts the token before it (the secret's AWSPREVIOUS version) as worker_previous, with the worker's scopes, so that the workers still running are not refused until their own deploy ends. Set it with the increment; apply, deploy order-grpc, deploy order-worker; then remove it, apply and deploy order-grpc again."
  type        = bool
  default     = false

  validation {
    condition     = !var.grpc_token_accept_previous || var.grpc_token_version > 1
    error_message = "grpc_token_accept_previous needs a rotation (grpc_token_version above 1): before the first one the worker token's secret has no previous version, and an order-grpc task that names it cannot start."
  }
}

variable "grpc_callers" {
  description = "The services that call order-grpc (besides order-worker, which always has a token): name => { scopes, token_version }. Each gets a generated bearer token in the secret <prefix>/grpc/callers/<name> (never in the Terraform state), which order-grpc accepts under <name> with exactly these scopes (orders.read, orders.place, orders.saga, orders.admin: docs/security.md). Give the caller's task role read access to its secret (output grpc_callers). Increment a caller's token_version to rotate its token, then redeploy order-grpc and the caller."
  type = map(object({
    scopes        = list(string)
    token_version = optional(number, 1)
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.grpc_callers) : can(regex("^[a-z][a-z0-9_]{0,47}$", name)) && !contains(["worker", "worker_previous"], name)])
    error_message = "grpc_callers: each name is 1-48 of a-z 0-9 _ starting with a letter (it becomes the variable ORDER_GRPC_AUTH_TOKEN_<NAME> and the actor recorded with its commands), and `worker` and `worker_previous` are the worker's."
  }

  validation {
    condition = alltrue([for caller in values(var.grpc_callers) :
      length(caller.scopes) > 0 && alltrue([for scope in caller.scopes : contains(["orders.read", "orders.place", "orders.saga", "orders.admin"], scope)])
    ])
    error_message = "grpc_callers: each caller needs at least one scope, each one of orders.read, orders.place, orders.saga, orders.admin (docs/security.md)."
  }

  validation {
    condition     = alltrue([for caller in values(var.grpc_callers) : caller.token_version >= 1 && floor(caller.token_version) == caller.token_version])
    error_message = "grpc_callers: token_version is a whole number from 1 (increment it to rotate the caller's token)."
  }
}

variable "deletion_protection" {
  description = "Deletion protection for the database and the ALB (true everywhere but dev)."
  type        = bool
  default     = true
}

variable "db_final_snapshot" {
  description = "Take a final snapshot of the database (`<prefix>-db-final`) when it is destroyed (false in dev only)."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Recovery window of deleted secrets, days (0 only for throw-away environments)."
  type        = number
  default     = 7
}

variable "max_receive_count" {
  description = "Receives before SQS dead-letters a message. With the worker's backoff (2 s doubling per receive, capped at 5 min) 10 receives ride out an outage of about 8 minutes."
  type        = number
  default     = 10
}

# --- deployments -----------------------------------------------------------------------------

variable "grpc_deployment_config" {
  description = "CodeDeploy traffic shift of order-grpc: CodeDeployDefault.ECSAllAtOnce, ECSCanary10Percent5Minutes, ECSLinear10PercentEvery1Minutes, ..."
  type        = string
  default     = "CodeDeployDefault.ECSAllAtOnce"
}

variable "grpc_wait_for_approval_minutes" {
  description = "0 = shift order-grpc's production traffic as soon as the replacement is healthy; otherwise wait up to this long (1-45) for someone to continue the deployment after testing it on the test listener (aws deploy continue-deployment), then stop it."
  type        = number
  default     = 0

  # The deploy workflow's apply job waits for the deployment (deploy/ci/ecs-deploy.sh, two
  # 30-minute rounds of CodeDeploy's waiter) and then rolls the projector and the worker, all
  # within its 135 minutes; a longer window would have CodeDeploy's wait outlast the script's.
  validation {
    condition     = var.grpc_wait_for_approval_minutes == floor(var.grpc_wait_for_approval_minutes) && var.grpc_wait_for_approval_minutes >= 0 && var.grpc_wait_for_approval_minutes <= 45
    error_message = "grpc_wait_for_approval_minutes must be a whole number of minutes from 0 to 45: the deploy workflow waits for the deployment at most 60 minutes (two rounds of CodeDeploy's waiter)."
  }
}

# --- operations ------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the services' and the database's log groups, days."
  type        = number
  default     = 30
}

variable "alert_emails" {
  description = "Email addresses subscribed to `<prefix>-alerts`."
  type        = list(string)
  default     = []
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider here (once per account)."
  type        = bool
  default     = false
}

variable "worker_providers" {
  description = "Adapters behind order-worker's inventory, payment and shipping ports: `simulated` (its built-in simulation, for trying the platform out) or `http` (the services of worker_provider_endpoints; contracts in docs/providers/*.yaml)."
  type        = string
  default     = "simulated"

  validation {
    condition     = contains(["simulated", "http"], var.worker_providers)
    error_message = "worker_providers must be simulated or http."
  }
}

variable "worker_provider_endpoints" {
  description = "With worker_providers = http, one entry per provider (inventory, payment, shipping): its https:// base URL, whether it authenticates the worker with a bearer token (`token`, default true) and/or a client certificate (`client_certificate`, mTLS), and its CA certificates in PEM (`ca_pem`, public; only for a private CA). Terraform creates an empty Secrets Manager secret per credential, `<prefix>/providers/<provider>/token` and `.../client-cert` (certificate chain and private key, PEM); put the values in before the first deploy (terraform/README.md)."
  type = map(object({
    url                = string
    token              = optional(bool, true)
    client_certificate = optional(bool, false)
    ca_pem             = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.worker_provider_endpoints) : contains(["inventory", "payment", "shipping"], name)])
    error_message = "worker_provider_endpoints takes the keys inventory, payment and shipping."
  }

  validation {
    condition     = alltrue([for e in values(var.worker_provider_endpoints) : startswith(e.url, "https://")])
    error_message = "provider URLs must be https:// (the credentials travel with every request)."
  }

  validation {
    condition     = var.worker_providers != "http" || length(var.worker_provider_endpoints) == 3
    error_message = "worker_providers = http needs worker_provider_endpoints for inventory, payment and shipping."
  }
}

variable "worker_provider_egress_cidrs" {
  description = "Networks (CIDRs) of the provider services, reached over HTTPS (443) by order-worker. Services behind NAT on the internet are reached through `enable_nat_gateway` instead."
  type        = list(string)
  default     = []
}

variable "worker_provider_timeout_ms" {
  description = "ORDER_WORKER_PROVIDER_TIMEOUT_MS: time one provider call may take, 1-120000 ms (the seed's payment gateway answers in 2.5 s at p95 under peak load)."
  type        = number
  default     = 10000

  validation {
    condition     = var.worker_provider_timeout_ms == floor(var.worker_provider_timeout_ms) && var.worker_provider_timeout_ms >= 1 && var.worker_provider_timeout_ms <= 120000
    error_message = "worker_provider_timeout_ms must be a whole number of milliseconds from 1 to 120000 (what order-worker accepts; it exits at start otherwise)."
  }
}

variable "worker_concurrency" {
  description = "ORDER_WORKER_CONCURRENCY: messages one worker task works on at once, 1-1000; null = derived from the task's memory (128 KiB per message in half of it, at most 1000: a 512 MiB task gets 1000)."
  type        = number
  default     = null

  validation {
    condition     = var.worker_concurrency == null || try(var.worker_concurrency == floor(var.worker_concurrency) && var.worker_concurrency >= 1 && var.worker_concurrency <= 1000, false)
    error_message = "worker_concurrency must be null or a whole number from 1 to 1000 (what order-worker accepts; it exits at start otherwise)."
  }
}

variable "worker_orders_per_second_per_task" {
  description = "Orders one worker task settles per second, as measured by `order-bench saga --latency-ms <your providers' latency>` (40: 2.5 s provider answers, docs/benchmarks.md): the worker's scale-out steps are task-minutes of work at this rate."
  type        = number
  default     = 40

  validation {
    condition     = var.worker_orders_per_second_per_task > 0
    error_message = "worker_orders_per_second_per_task must be positive."
  }
}

variable "standby" {
  description = <<-EOT
    This environment stands in for the one of the same project and environment in another region
    of the same account, after that region was lost (docs/operations.md, "Region lost"). The
    names that are unique per account or worldwide (IAM roles, the access-log bucket) then carry
    this region, so that nothing collides with what the primary created; the images are read from
    the repositories ECR replication made here; the GitHub OIDC provider and the DR copies are
    the primary's and are not created again. Usually set with db_restore.
  EOT
  type        = bool
  default     = false

  validation {
    condition     = !var.standby || var.dr_region == null
    error_message = "A standby makes no disaster-recovery copies of its own: set dr_region = null (ECR replication is configured once per registry, by the primary)."
  }

  validation {
    condition     = !var.standby || !var.create_github_oidc_provider
    error_message = "A standby uses the account's GitHub OIDC provider, which the primary created: set create_github_oidc_provider = false."
  }
}

variable "db_restore" {
  description = <<-EOT
    Create the database by a point-in-time restore instead of empty (null: empty). In a standby:
    { source_automated_backups_arn = <the primary's disaster_recovery.backup_replication_arn>,
    restore_time = "2026-05-04T13:20:00Z" (null: the latest restorable time) }. Read when the
    instance is created, never again: changing or removing it later replaces nothing.
  EOT
  type = object({
    source_automated_backups_arn  = optional(string)
    source_db_instance_identifier = optional(string)
    restore_time                  = optional(string)
  })
  default = null

  validation {
    condition = var.db_restore == null || (
      (try(var.db_restore.source_automated_backups_arn, null) == null) != (try(var.db_restore.source_db_instance_identifier, null) == null)
    )
    error_message = "db_restore needs exactly one source: source_automated_backups_arn or source_db_instance_identifier."
  }

  validation {
    condition     = var.db_restore == null || try(var.db_restore.restore_time, null) == null || can(formatdate("YYYY", var.db_restore.restore_time))
    error_message = "db_restore.restore_time must be an RFC 3339 time such as 2026-05-04T13:20:00Z (null: the latest restorable time)."
  }
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
