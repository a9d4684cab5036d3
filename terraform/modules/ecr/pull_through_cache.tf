# Third-party images (the AWS Distro for OpenTelemetry collector sidecar) are pulled through an
# ECR pull-through cache of ECR Public: tasks pull them over the ECR VPC endpoints like our own
# images, without NAT, and the copy stays available if the upstream goes away.
#
# The rule's prefix is unique per registry (account and region), so it carries the environment:
# `<prefix>/ecr-public`, and dev and prod can share an account.

locals {
  pull_through_prefix = coalesce(var.pull_through_prefix, "${var.name_prefix}/ecr-public")
}

resource "aws_ecr_pull_through_cache_rule" "ecr_public" {
  ecr_repository_prefix = local.pull_through_prefix
  upstream_registry_url = "public.ecr.aws"

  lifecycle {
    precondition {
      condition     = length(local.pull_through_prefix) >= 2 && length(local.pull_through_prefix) <= 30
      error_message = "the pull-through cache prefix ${local.pull_through_prefix} must be 2-30 characters (ECR's limit): set pull_through_prefix"
    }
  }
}

# Created up front (instead of on first pull) so that it is scanned and encrypted like the
# others, and so that the task execution roles never need ecr:CreateRepository.
resource "aws_ecr_repository" "cached" {
  for_each = toset(var.cached_upstream_repositories)

  name                 = "${local.pull_through_prefix}/${each.value}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "cached" {
  for_each = aws_ecr_repository.cached

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.keep_last_images} cached upstream images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.keep_last_images
      }
      action = { type = "expire" }
    }]
  })
}
