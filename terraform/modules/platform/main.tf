# The whole order ledger platform for one environment. The roots in terraform/environments/
# only choose sizes and switches; everything is wired here, once.
#
#   callers -> ALB (internal by default: private subnets; HTTPS, gRPC) -> order-grpc (private
#              subnets; blue/green by CodeDeploy)
#   order-grpc, order-projector -> RDS PostgreSQL (isolated subnets)
#   order-projector -> SQS orders.fifo -> order-worker -> ALB -> order-grpc
#                      `-> orders-dlq.fifo

locals {
  name_prefix = "${var.project}-${var.environment}"
  # Names unique per account (IAM roles) or worldwide (S3 buckets): a standby in a second region
  # carries its region in them, so that it can be applied beside the primary.
  global_name_prefix = var.standby ? "${local.name_prefix}-${data.aws_region.current.name}" : local.name_prefix
  app_metrics        = "${local.name_prefix}/App"

  images = ["order-grpc", "order-projector", "order-worker", "order-dbinit"]

  collector_upstream = "aws-observability/aws-otel-collector"
}

module "kms" {
  source = "../kms"

  name_prefix = local.name_prefix
}

module "network" {
  source = "../network"

  name_prefix         = local.name_prefix
  global_name_prefix  = local.global_name_prefix
  vpc_cidr            = var.vpc_cidr
  kms_key_arn         = module.kms.key_arn
  az_count            = var.az_count
  az_letters          = var.az_letters
  enable_nat_gateway  = var.enable_nat_gateway
  single_nat_gateway  = var.single_nat_gateway
  endpoint_az_count   = var.endpoint_az_count
  interface_endpoints = var.interface_endpoints
}

module "cluster" {
  source = "../cluster"

  name_prefix        = local.name_prefix
  kms_key_arn        = module.kms.key_arn
  container_insights = var.container_insights
}

module "ecr" {
  source = "../ecr"

  name_prefix                  = local.name_prefix
  repositories                 = local.images
  kms_key_arn                  = module.kms.key_arn
  force_delete                 = var.ecr_force_delete
  cached_upstream_repositories = [local.collector_upstream]

  # A standby's images are the primary's, copied by ECR replication into repositories of the same
  # names (`<prefix>/*`, which also covers the primary's pull-through cache): it reads those, and
  # its own pull-through cache takes another prefix.
  adopt_replicated_repositories = var.standby
  pull_through_prefix           = var.standby ? "${local.name_prefix}/ecr-dr" : null
}

data "aws_region" "current" {}
