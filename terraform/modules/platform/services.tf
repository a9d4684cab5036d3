# The three services. Their task_role_statements ARE the permission matrix, checked by
# tests/infra/invariants.py (check_service_permission_matrix):
#
#   service          | SQS                                                     | database
#   order-grpc       | none                                                    | orders_app (DATABASE_URL)
#   order-projector  | SendMessage + GetQueueAttributes on orders.fifo         | orders_projector
#   order-worker     | Receive/Delete/ChangeMessageVisibility/GetQueueAttributes | none (calls order-grpc)
#                    | on orders.fifo, SendMessage on orders-dlq.fifo          |

locals {
  collector = {
    image             = "${module.ecr.cached_repository_urls[local.collector_upstream]}:${var.otel_collector_version}"
    repository_arn    = module.ecr.cached_repository_arns[local.collector_upstream]
    metrics_namespace = local.app_metrics
  }

  grpc_port = 50051
}

module "grpc" {
  source = "../service"

  name_prefix  = local.name_prefix
  service_name = "order-grpc"
  image        = "${module.ecr.repository_urls["order-grpc"]}:${var.image_tag}"
  command      = ["serve"]
  grpc_port    = local.grpc_port
  admin_port   = 9464

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

  target_group_arn = module.load_balancer.target_group_arn
  service_connect = {
    namespace_arn = module.cluster.service_connect_namespace_arn
    server        = true
  }

  secrets = {
    DATABASE_URL           = { secret_arn = module.database.login_secret_arns["grpc"], json_key = "url" }
    ORDER_GRPC_AUTH_TOKENS = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }
  }

  # order-grpc calls no AWS API: no SQS, nothing.
  task_role_statements = []

  ingress_rules = {
    alb = {
      security_group_id = module.load_balancer.security_group_id
      port              = local.grpc_port
      description       = "gRPC from the ALB"
    }
    worker = {
      security_group_id = module.worker.security_group_id
      port              = local.grpc_port
      description       = "gRPC from order-worker (Service Connect)"
    }
  }
  egress_rules = merge(local.aws_api_egress, local.database_egress)
}

module "projector" {
  source = "../service"

  name_prefix  = local.name_prefix
  service_name = "order-projector"
  image        = "${module.ecr.repository_urls["order-projector"]}:${var.image_tag}"
  command      = ["run"]
  admin_port   = 9465

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

  environment = {
    ORDERS_QUEUE_URL = module.queue.queue_url
  }
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

  name_prefix  = local.name_prefix
  service_name = "order-worker"
  image        = "${module.ecr.repository_urls["order-worker"]}:${var.image_tag}"
  command      = ["run"]
  admin_port   = 9466

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
  stop_timeout_seconds = 45 # 30 s to finish in-flight messages, plus margin

  service_connect = {
    namespace_arn = module.cluster.service_connect_namespace_arn
    server        = false
  }

  environment = {
    WORKER_MODE         = "sqs-consumer"
    ORDERS_QUEUE_URL    = module.queue.queue_url
    ORDERS_DLQ_URL      = module.queue.dlq_url
    ORDER_GRPC_ENDPOINT = "http://order-grpc:${local.grpc_port}"
  }
  secrets = {
    ORDER_GRPC_AUTH_TOKEN = { secret_arn = aws_secretsmanager_secret.worker_grpc_token.arn }
  }

  task_role_statements = [
    {
      sid       = "ConsumeOrderEvents"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
      resources = [module.queue.queue_arn]
    },
    {
      sid       = "DeadLetterIrrecoverable"
      actions   = ["sqs:SendMessage"]
      resources = [module.queue.dlq_arn]
    },
  ]

  egress_rules = merge(local.aws_api_egress, {
    order-grpc = {
      port              = local.grpc_port
      description       = "gRPC to order-grpc (Service Connect)"
      security_group_id = module.grpc.security_group_id
    }
  })
}
