# The three services. Their task_role_statements ARE the permission matrix, checked by
# tests/infra/invariants.py (check_service_permission_matrix):
#
# order-grpc is deployed blue/green by CodeDeploy (deployments.tf), the projector and the worker
# by rolling updates. The worker reaches order-grpc through the load balancer (HTTPS, the API's
# certificate): ECS does not support Service Connect for a CODE_DEPLOY service.
#
#   service          | SQS                                                     | database
#   order-grpc       | none                                                    | orders_app (DATABASE_URL)
#   order-projector  | SendMessage + GetQueueAttributes on orders.fifo         | orders_projector
#   order-worker     | Receive/Delete/ChangeMessageVisibility/GetQueueAttributes | none (calls order-grpc)
#                    | on orders.fifo, SendMessage + GetQueueAttributes        |
#                    | on orders-dlq.fifo (readiness checks it answers)        |

locals {
  collector = {
    image             = "${module.ecr.cached_repository_urls[local.collector_upstream]}:${var.otel_collector_version}"
    repository_arn    = module.ecr.cached_repository_arns[local.collector_upstream]
    metrics_namespace = local.app_metrics
  }

  grpc_port = 50051

  # The RDS CA bundle in the runtime image (deploy/Dockerfile): DATABASE_URL says
  # sslmode=verify-full, and the store trusts this bundle for it.
  database_ca = { ORDER_DB_CA_FILE = "/etc/ssl/certs/rds-global-bundle.pem" }
  # and each task's share of the database's connections (var.db_max_connections)
  database_pool = { ORDER_DB_POOL_SIZE = tostring(var.db_pool_size) }

  # order-worker's providers (ORDER_WORKER_PROVIDERS=http): URLs and CAs as plain settings,
  # tokens and client certificates from the secrets in secrets.tf.
  provider_endpoints = var.worker_providers == "http" ? var.worker_provider_endpoints : {}
  worker_provider_environment = merge(
    {
      ORDER_WORKER_PROVIDERS           = var.worker_providers
      ORDER_WORKER_PROVIDER_TIMEOUT_MS = tostring(var.worker_provider_timeout_ms)
    },
    var.worker_concurrency == null ? {} : { ORDER_WORKER_CONCURRENCY = tostring(var.worker_concurrency) },
    { for name, e in local.provider_endpoints : "ORDER_PROVIDER_${upper(name)}_URL" => e.url },
    { for name, e in local.provider_endpoints : "ORDER_PROVIDER_${upper(name)}_CA" => e.ca_pem if e.ca_pem != null },
  )
  worker_provider_secrets = merge(
    { for name, secret in aws_secretsmanager_secret.provider_token : "ORDER_PROVIDER_${upper(name)}_TOKEN" => { secret_arn = secret.arn } },
    { for name, secret in aws_secretsmanager_secret.provider_client_cert : "ORDER_PROVIDER_${upper(name)}_CLIENT_CERT" => { secret_arn = secret.arn } },
  )
  worker_provider_egress = length(var.worker_provider_egress_cidrs) == 0 || var.worker_providers != "http" ? {} : {
    for index, cidr in var.worker_provider_egress_cidrs : "provider-${index}" => {
      port        = 443
      description = "HTTPS to the inventory, payment and shipping providers"
      cidr_ipv4   = cidr
    }
  }
}

module "grpc" {
  source = "../service"

  name_prefix        = local.name_prefix
  global_name_prefix = local.global_name_prefix
  service_name       = "order-grpc"
  image              = "${module.ecr.repository_urls["order-grpc"]}:${var.image_tag}"
  command            = ["serve"]
  grpc_port          = local.grpc_port
  admin_port         = 9464

  cluster_arn         = module.cluster.cluster_arn
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  kms_key_arn         = module.kms.key_arn
  ecr_repository_arns = [module.ecr.repository_arns["order-grpc"]]
  cpu                 = var.grpc_cpu
  memory              = var.grpc_memory
  desired_count       = var.grpc_min_capacity
  cpu_architecture    = var.cpu_architecture
  log_retention_days  = var.log_retention_days
  otel_collector      = local.collector
  # the binary's 30 s shutdown grace (ORDER_SHUTDOWN_GRACE_SECONDS), then the trace flush and
  # the pool close
  stop_timeout_seconds = 45

  deployment_controller = "CODE_DEPLOY"
  load_balancer = {
    target_group_arn = module.load_balancer.target_group_arns["blue"]
    listener_arns    = values(module.load_balancer.listener_arns)
  }

  environment = merge(local.database_ca, local.database_pool, {
    ORDER_GRPC_COMMAND_EVENT_IDS = var.grpc_command_event_ids
    # What each caller may do (docs/security.md): the worker reads orders and drives the saga,
    # nothing else (no PlaceOrder, no CancelOrder); every service of var.grpc_callers gets
    # exactly the scopes it declares. Each token is a secret of its own (below).
    ORDER_GRPC_AUTH_SCOPES = join(",", concat(
      ["worker=orders.read+orders.saga"],
      var.grpc_token_accept_previous ? ["worker_previous=orders.read+orders.saga"] : [],
      [for name in sort(keys(var.grpc_callers)) : "${name}=${join("+", sort(distinct(var.grpc_callers[name].scopes)))}"],
    ))
  })

  secrets = merge(
    {
      DATABASE_URL                 = { secret_arn = module.database.login_secret_arns["grpc"], json_key = "url" }
      ORDER_GRPC_AUTH_TOKEN_WORKER = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }
    },
    # during a rotation of the worker's token: the one before it too (the version Secrets
    # Manager labels AWSPREVIOUS when the apply puts the new one), for the workers still running
    var.grpc_token_accept_previous ? {
      ORDER_GRPC_AUTH_TOKEN_WORKER_PREVIOUS = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn, version_stage = "AWSPREVIOUS" }
    } : {},
    # one variable per calling service: ORDER_GRPC_AUTH_TOKEN_<NAME>, accepted as <name>
    { for name, secret in aws_secretsmanager_secret.grpc_caller_token : "ORDER_GRPC_AUTH_TOKEN_${upper(name)}" => { secret_arn = secret.arn } },
    # queries go to the read replica when there is one (same login, the secret's read_url)
    var.db_read_replica ? {
      ORDER_GRPC_READ_DATABASE_URL = { secret_arn = module.database.login_secret_arns["grpc"], json_key = "read_url" }
    } : {},
  )

  # order-grpc calls no AWS API: no SQS, nothing.
  task_role_statements = []

  ingress_rules = {
    alb = {
      security_group_id = module.load_balancer.security_group_id
      port              = local.grpc_port
      description       = "gRPC from the ALB (order-worker's calls come through it too)"
    }
  }
  egress_rules = merge(local.aws_api_egress, local.database_egress)
}

module "projector" {
  source = "../service"

  name_prefix        = local.name_prefix
  global_name_prefix = local.global_name_prefix
  service_name       = "order-projector"
  image              = "${module.ecr.repository_urls["order-projector"]}:${var.image_tag}"
  command            = ["run"]
  admin_port         = 9465

  cluster_arn         = module.cluster.cluster_arn
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  kms_key_arn         = module.kms.key_arn
  ecr_repository_arns = [module.ecr.repository_arns["order-projector"]]
  cpu                 = var.projector_cpu
  memory              = var.projector_memory
  desired_count       = var.projector_count
  cpu_architecture    = var.cpu_architecture
  log_retention_days  = var.log_retention_days
  otel_collector      = local.collector
  # the binary's 30 s shutdown grace (ORDER_SHUTDOWN_GRACE_SECONDS), then the trace flush and
  # the pool close
  stop_timeout_seconds = 45

  environment = merge(local.database_ca, local.database_pool, {
    ORDERS_QUEUE_URL = module.queue.queue_url
  })
  secrets = {
    DATABASE_URL = { secret_arn = module.database.login_secret_arns["projector"], json_key = "url" }
  }

  task_role_statements = [
    {
      sid       = "PublishOrderEvents"
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
      resources = [module.queue.queue_arn]
    },
  ]

  egress_rules = merge(local.aws_api_egress, local.database_egress)
}

module "worker" {
  source = "../service"

  name_prefix        = local.name_prefix
  global_name_prefix = local.global_name_prefix
  service_name       = "order-worker"
  image              = "${module.ecr.repository_urls["order-worker"]}:${var.image_tag}"
  command            = ["run"]
  admin_port         = 9466

  cluster_arn          = module.cluster.cluster_arn
  vpc_id               = module.network.vpc_id
  subnet_ids           = module.network.private_subnet_ids
  kms_key_arn          = module.kms.key_arn
  ecr_repository_arns  = [module.ecr.repository_arns["order-worker"]]
  cpu                  = var.worker_cpu
  memory               = var.worker_memory
  desired_count        = var.worker_min_capacity
  capacity_provider    = var.worker_capacity_provider
  cpu_architecture     = var.cpu_architecture
  log_retention_days   = var.log_retention_days
  otel_collector       = local.collector
  stop_timeout_seconds = 45 # 30 s (ORDER_SHUTDOWN_GRACE_SECONDS) to finish in-flight messages (a receive under way, up to 20 s, ends within it), plus margin

  # order-grpc through the load balancer's production listener: the name on its certificate
  # (var.api_host_name) is checked against the public CAs of the image.
  environment = merge({
    WORKER_MODE           = "sqs-consumer"
    ORDERS_QUEUE_URL      = module.queue.queue_url
    ORDERS_DLQ_URL        = module.queue.dlq_url
    ORDER_GRPC_ENDPOINT   = "https://${module.load_balancer.dns_name}"
    ORDER_GRPC_TLS_DOMAIN = var.api_host_name
    ORDER_GRPC_CA_FILE    = "/etc/ssl/certs/ca-certificates.crt"
  }, local.worker_provider_environment)
  secrets = merge({
    ORDER_GRPC_AUTH_TOKEN = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }
  }, local.worker_provider_secrets)

  task_role_statements = [
    {
      sid = "ConsumeOrderEvents"
      # SendMessage: a message at its last receive during a provider outage is sent again as a
      # new one (its receives are not its fault); GetQueueAttributes reads maxReceiveCount.
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage"]
      resources = [module.queue.queue_arn]
    },
    {
      sid       = "DeadLetterIrrecoverable"
      actions   = ["sqs:GetQueueAttributes", "sqs:SendMessage"]
      resources = [module.queue.dlq_arn]
    },
  ]

  egress_rules = merge(local.aws_api_egress, {
    order-grpc = {
      port              = 443
      description       = "gRPC to order-grpc through the load balancer"
      security_group_id = module.load_balancer.security_group_id
    }
  }, local.worker_provider_egress)
}
