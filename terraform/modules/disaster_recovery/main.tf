# Disaster recovery copies in a second region (var.dr_region, provider aws.dr):
#   * the database's automated backups, replicated continuously by RDS: point-in-time restore in
#     the DR region within var.backup_retention_days, encrypted with a key of that region;
#   * the environment's images (`<prefix>/*`, the pull-through cache included), replicated by ECR
#     on every push.
# The restore runbook is in docs/operations.md.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# RDS needs a key of the destination region for encrypted backups.
resource "aws_kms_key" "dr" {
  provider = aws.dr

  description             = "${var.name_prefix}: database backups replicated to ${var.dr_region}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_kms_alias" "dr" {
  provider = aws.dr

  name          = "alias/${var.name_prefix}-dr"
  target_key_id = aws_kms_key.dr.key_id
}

resource "aws_db_instance_automated_backups_replication" "this" {
  provider = aws.dr

  source_db_instance_arn = var.db_instance_arn
  kms_key_id             = aws_kms_key.dr.arn
  retention_period       = var.backup_retention_days
}

# One replication configuration per registry (account and region): only one environment of an
# account may manage it (prod does; see terraform/README.md).
resource "aws_ecr_replication_configuration" "this" {
  replication_configuration {
    rule {
      destination {
        region      = var.dr_region
        registry_id = data.aws_caller_identity.current.account_id
      }

      repository_filter {
        filter      = "${var.name_prefix}/"
        filter_type = "PREFIX_MATCH"
      }
    }
  }
}
