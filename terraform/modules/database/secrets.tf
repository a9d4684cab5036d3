# One login user per runtime identity, each with its own secret (JSON: username, password, url).
# The ECS tasks read `url` as DATABASE_URL; bootstrap-roles.sh (the migration task) reads
# `password` to create or update the login user. The worker has no database credentials.
#
# Passwords are ephemeral values written through write-only arguments: they are never stored in
# the Terraform state or plan. Bump var.credentials_version to rotate all of them, then run the
# migration task (it updates the users) and redeploy the services.

locals {
  login_users = {
    migrator  = "orders_migrator"
    grpc      = "order_grpc"
    projector = "order_projector"
  }
}

ephemeral "random_password" "login" {
  for_each = local.login_users

  length  = 40
  special = false # the password goes into a URL
}

resource "aws_secretsmanager_secret" "login" {
  #checkov:skip=CKV2_AWS_57:Rotation is by var.credentials_version plus a migration run (documented in terraform/README.md); a rotation Lambda would need network access to the database.
  for_each = local.login_users

  name                    = "${var.name_prefix}/db/${each.value}"
  description             = "PostgreSQL login ${each.value} (member of one group role) for ${var.name_prefix}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "login" {
  for_each = local.login_users

  secret_id = aws_secretsmanager_secret.login[each.key].id
  secret_string_wo = jsonencode({
    username = each.value
    password = ephemeral.random_password.login[each.key].result
    url = format(
      "postgres://%s:%s@%s:%d/%s?sslmode=require",
      each.value,
      ephemeral.random_password.login[each.key].result,
      aws_db_instance.this.address,
      aws_db_instance.this.port,
      var.database_name,
    )
  })
  secret_string_wo_version = var.credentials_version
}
