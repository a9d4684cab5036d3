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

# Generated at apply time and written only to write-only arguments: never in the state or the
# plan. Terraform's uuid() draws from the operating system's CSPRNG (crypto/rand, 122 random bits
# per call), so two of them make a 244-bit password of hex digits (safe in a URL). Not an
# `ephemeral "aws_secretsmanager_random_password"`: terraform test's mock provider cannot mock
# ephemeral resources (Terraform 1.11), and the mocked plan/apply of every root must run offline.
locals {
  login_passwords = { for key in keys(local.login_users) : key => sensitive(replace("${uuid()}${uuid()}", "-", "")) }
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

# The grpc login's secret also carries `read_url`, the same login on the read replica, when
# there is one. Write-only values are sent only with a new version: the version changes with
# the replica too (a replica turned on or off writes every login secret again, with new
# passwords, as a rotation does). Without a replica it is credentials_version, as before.
locals {
  login_secret_version = var.read_replica ? var.credentials_version + 1000000 : var.credentials_version
  # verify-full: the server's certificate must chain to the RDS CA bundle the images carry
  # (ORDER_DB_CA_FILE / PGSSLROOTCERT) and name this host
  login_url_format = "postgres://%s:%s@%s:%d/%s?sslmode=verify-full"
}

resource "aws_secretsmanager_secret_version" "login" {
  for_each = local.login_users

  secret_id = aws_secretsmanager_secret.login[each.key].id
  secret_string_wo = jsonencode(merge(
    {
      username = each.value
      password = local.login_passwords[each.key]
      url = format(
        local.login_url_format,
        each.value,
        local.login_passwords[each.key],
        aws_db_instance.this.address,
        aws_db_instance.this.port,
        var.database_name,
      )
    },
    each.key == "grpc" && var.read_replica ? {
      read_url = format(
        local.login_url_format,
        each.value,
        local.login_passwords[each.key],
        aws_db_instance.replica[0].address,
        aws_db_instance.replica[0].port,
        var.database_name,
      )
    } : {},
  ))
  secret_string_wo_version = local.login_secret_version
}
