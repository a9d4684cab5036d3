# Disaster recovery copies in var.dr_region (null = none): replicated automated database backups
# and ECR replication of the environment's images. Restore runbook: docs/operations.md.

module "disaster_recovery" {
  source = "../disaster_recovery"
  count  = var.dr_region == null ? 0 : 1

  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name_prefix           = local.name_prefix
  dr_region             = var.dr_region
  db_instance_arn       = module.database.arn
  backup_retention_days = var.dr_backup_retention_days
}
