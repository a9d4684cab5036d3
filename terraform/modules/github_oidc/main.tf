# The deploy role of GitHub Actions, assumed with the workflow's OIDC token: no stored AWS keys.
# Only jobs of `var.github_repository` running in the GitHub environment `var.github_environment`
# can assume it (the environment carries the protection rules: branch main, reviewers for prod).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  oidc_host         = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:oidc-provider/${local.oidc_host}"
}

# One per account: create it in one environment's root only, or outside Terraform.
resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["repo:${var.github_repository}:environment:${var.github_environment}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name               = "${coalesce(var.global_name_prefix, var.name_prefix)}-github-deploy"
  description        = "GitHub Actions deploy of ${var.name_prefix}: push images, run the migration, roll the services"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  # Longer than the longest deploy job (90 min: migration, blue/green with approval waits,
  # rolling updates), so that its credentials, taken once at the job's start, do not expire.
  max_session_duration = 10800
  tags                 = var.tags
}
