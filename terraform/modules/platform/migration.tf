module "migration" {
  source = "../migration"

  name_prefix        = local.name_prefix
  global_name_prefix = local.global_name_prefix
  migrate_image      = "${module.ecr.repository_urls["order-grpc"]}:${var.image_tag}"
  dbinit_image       = "${module.ecr.repository_urls["order-dbinit"]}:${var.image_tag}"
  ecr_repository_arns = [
    module.ecr.repository_arns["order-grpc"],
    module.ecr.repository_arns["order-dbinit"],
  ]

  vpc_id            = module.network.vpc_id
  db_address        = module.database.address
  db_port           = module.database.port
  db_name           = module.database.database_name
  master_secret_arn = module.database.master_secret_arn
  login_secret_arns = module.database.login_secret_arns
  kms_key_arn       = module.kms.key_arn
  cpu_architecture  = var.cpu_architecture
  egress_rules      = merge(local.aws_api_egress, local.database_egress)
}
