# One repository per image, tags immutable (an image tag is a commit SHA and never moves),
# scanned on push, encrypted with the environment's key, old images expired.

resource "aws_ecr_repository" "this" {
  for_each = var.adopt_replicated_repositories ? toset([]) : toset(var.repositories)

  name                 = "${var.name_prefix}/${each.value}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = merge(var.tags, { service = each.value })
}

# A standby in the DR region finds its repositories made by ECR replication from the primary
# region (with the images the primary pushed): it reads them instead of creating them.
data "aws_ecr_repository" "replicated" {
  for_each = var.adopt_replicated_repositories ? toset(var.repositories) : toset([])

  name = "${var.name_prefix}/${each.value}"
}

locals {
  repositories = var.adopt_replicated_repositories ? {
    for k, r in data.aws_ecr_repository.replicated : k => { name = r.name, arn = r.arn, url = r.repository_url }
    } : {
    for k, r in aws_ecr_repository.this : k => { name = r.name, arn = r.arn, url = r.repository_url }
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = toset(var.repositories)

  repository = local.repositories[each.value].name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Drop untagged layers (interrupted pushes) after ${var.untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the last ${var.keep_last_images} images (rollback window)"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.keep_last_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
