# Bearer token the worker presents to order-grpc. order-grpc reads the same secret as its list
# of accepted tokens (ORDER_GRPC_AUTH_TOKENS, comma-separated: one entry today). Written through
# a write-only argument, so it never lands in the Terraform state; bump
# var.grpc_token_version to rotate it, then redeploy order-grpc and order-worker.

# Two uuid() calls: 244 random bits from the OS CSPRNG, written only to a write-only argument
# (see modules/database/secrets.tf for why this is not an ephemeral resource).
locals {
  worker_grpc_token = sensitive(replace("${uuid()}${uuid()}", "-", ""))
}

resource "aws_secretsmanager_secret" "worker_grpc_token" {
  #checkov:skip=CKV2_AWS_57:Rotated by var.grpc_token_version plus a redeploy (terraform/README.md); both sides read the secret only at task start.
  name                    = "${local.name_prefix}/grpc/worker-token"
  description             = "Bearer token of order-worker for order-grpc (${local.name_prefix})"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "worker_grpc_token" {
  secret_id                = aws_secretsmanager_secret.worker_grpc_token.id
  secret_string_wo         = local.worker_grpc_token
  secret_string_wo_version = var.grpc_token_version
}
