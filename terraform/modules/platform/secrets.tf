# Bearer token the worker presents to order-grpc. order-grpc reads the same secret as the token
# it accepts under the name `worker` (ORDER_GRPC_AUTH_TOKEN_WORKER). Written through a
# write-only argument, so it never lands in the Terraform state; bump var.grpc_token_version to
# rotate it, then redeploy order-grpc and order-worker. The rotation puts a new version, and
# Secrets Manager labels the one before it AWSPREVIOUS: with var.grpc_token_accept_previous
# order-grpc reads that one too (services.tf), so the running workers are not refused.

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

# One bearer token per calling service of var.grpc_callers, each in a secret of its own: the
# caller's task role reads its own secret only (output grpc_callers), order-grpc reads them all,
# each as ORDER_GRPC_AUTH_TOKEN_<NAME>, and accepts it under <name> with the caller's scopes
# (services.tf). Generated and written like the worker's (write-only: never in the state); a
# caller's token_version rotates its token (then redeploy order-grpc and that caller).
locals {
  grpc_caller_tokens = sensitive({ for name in keys(var.grpc_callers) : name => replace("${uuid()}${uuid()}", "-", "") })
}

resource "aws_secretsmanager_secret" "grpc_caller_token" {
  #checkov:skip=CKV2_AWS_57:Rotated by the caller's token_version plus a redeploy (terraform/README.md); order-grpc reads the secret only at task start.
  for_each = var.grpc_callers

  name                    = "${local.name_prefix}/grpc/callers/${each.key}"
  description             = "Bearer token of the calling service ${each.key} for order-grpc (${local.name_prefix})"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "grpc_caller_token" {
  for_each = var.grpc_callers

  secret_id                = aws_secretsmanager_secret.grpc_caller_token[each.key].id
  secret_string_wo         = local.grpc_caller_tokens[each.key]
  secret_string_wo_version = each.value.token_version
}

# Credentials of order-worker for its providers (worker_providers = http): one secret per
# provider and kind, created empty. Terraform never sees the values: put them in with
#   aws secretsmanager put-secret-value --secret-id <prefix>/providers/payment/token --secret-string '...'
#   aws secretsmanager put-secret-value --secret-id <prefix>/providers/payment/client-cert --secret-string "$(cat chain.pem key.pem)"
# before the first deploy (ECS cannot start a task whose secret has no value), and again to
# rotate (then redeploy the worker: it reads them at task start).
resource "aws_secretsmanager_secret" "provider_token" {
  #checkov:skip=CKV2_AWS_57:The provider issues the token; rotated by putting a new value and redeploying the worker (terraform/README.md).
  for_each = { for name, e in local.provider_endpoints : name => e if e.token }

  name                    = "${local.name_prefix}/providers/${each.key}/token"
  description             = "Bearer token of order-worker for the ${each.key} provider (${local.name_prefix})"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret" "provider_client_cert" {
  #checkov:skip=CKV2_AWS_57:The provider's CA issues the certificate; rotated by putting a new value and redeploying the worker (terraform/README.md).
  for_each = { for name, e in local.provider_endpoints : name => e if e.client_certificate }

  name                    = "${local.name_prefix}/providers/${each.key}/client-cert"
  description             = "Client certificate chain and private key (PEM) of order-worker for the ${each.key} provider (${local.name_prefix})"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}
