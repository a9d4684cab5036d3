# An internet-facing load balancer gets a WAF web ACL: per-address rate limit, AWS's IP
# reputation list and known-bad-inputs rules. Managed rule groups that inspect request bodies as
# text (the common rule set) are left out: gRPC bodies are binary protobuf frames. An internal
# load balancer has none (its callers are the declared networks and security groups).

locals {
  waf = var.internal ? {} : { this = true }
}

# The system's own addresses (var.late_allowed_cidrs: the NAT gateways, through which order-worker
# reaches a public ALB) are not rate limited: the whole worker fleet shares one address per NAT
# gateway and makes about 16 calls per order, past the per-address limit at under one order a
# second. They still meet the reputation and bad-input rules.
resource "aws_wafv2_ip_set" "own" {
  for_each = local.waf

  name               = "${var.name_prefix}-own-addresses"
  description        = "The system's own outbound addresses (${var.late_allowed_cidrs_description}): not rate limited"
  scope              = "REGIONAL"
  ip_address_version = "IPV4"
  addresses          = var.late_allowed_cidrs
  tags               = var.tags
}

resource "aws_wafv2_web_acl" "this" {
  for_each = local.waf

  name        = "${var.name_prefix}-alb"
  description = "Public order-grpc API: rate limit, IP reputation, known bad inputs"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-limit-per-address"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit_per_5_minutes
        aggregate_key_type = "IP"
        scope_down_statement {
          not_statement {
            statement {
              ip_set_reference_statement {
                arn = aws_wafv2_ip_set.own[each.key].arn
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-ip-reputation"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name_prefix}-alb"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "this" {
  for_each = local.waf

  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[each.key].arn
}

# WAF logs go to a log group whose name must start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_338:Retention is a per-environment cost decision (var.waf_log_retention_days).
  for_each = local.waf

  name              = "aws-waf-logs-${var.name_prefix}"
  retention_in_days = var.waf_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  for_each = local.waf

  resource_arn            = aws_wafv2_web_acl.this[each.key].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[each.key].arn]
}
