# Access-log bucket of the ALB: private, versioned, expired after var.access_log_retention_days.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# Regions opened before August 2022 deliver ALB access logs as an AWS account of their own,
# which the bucket policy names; the newer ones (eu-central-2, ap-south-2, ca-west-1, ...) only
# as the log-delivery service principal, and `aws_elb_service_account` fails the plan there
# ("unsupported AWS Region"). So the legacy statement exists only where that account does.
locals {
  elb_account_regions = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "ap-southeast-3", "ca-central-1", "eu-central-1", "eu-west-1",
    "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1", "me-south-1", "sa-east-1",
    "us-gov-west-1", "us-gov-east-1", "cn-north-1", "cn-northwest-1",
  ]
  elb_legacy_region = contains(local.elb_account_regions, data.aws_region.current.name)
}

data "aws_elb_service_account" "this" {
  count = local.elb_legacy_region ? 1 : 0
}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_144:Access logs are operational data; cross-region replication would double the cost for no recovery need.
  #checkov:skip=CKV_AWS_145:ALB access-log delivery supports only SSE-S3 (AES256), not SSE-KMS.
  #checkov:skip=CKV_AWS_18:This is the log bucket; logging it into itself would loop and another bucket only for that adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events of access logs.
  bucket        = "${coalesce(var.global_name_prefix, var.name_prefix)}-alb-logs-${data.aws_caller_identity.current.account_id}"
  force_destroy = !var.deletion_protection
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire"
    status = "Enabled"
    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "access_logs" {
  dynamic "statement" {
    for_each = data.aws_elb_service_account.this
    content {
      sid       = "ElbLogDeliveryLegacyRegions"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
      principals {
        type        = "AWS"
        identifiers = [statement.value.arn]
      }
    }
  }

  statement {
    sid       = "ElbLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
