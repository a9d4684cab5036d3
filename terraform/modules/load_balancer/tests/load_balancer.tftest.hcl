# The load balancer of order-grpc (mocked apply).

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix              = "order-ledger-prod"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  certificate_arn          = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  kms_key_arn              = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  target_security_group_id = "sg-0123456789abcdef0"
}

run "internal_by_default" {
  command = apply

  variables {
    allowed_cidrs              = ["10.60.0.0/16"]
    allowed_security_group_ids = { order-worker = "sg-0aaaaaaaaaaaaaaaa" }
  }

  # defect 7: callers are internal services
  assert {
    condition     = aws_lb.this.internal == true
    error_message = "the load balancer is internet-facing by default"
  }

  assert {
    condition     = length(aws_wafv2_web_acl.this) == 0
    error_message = "an internal load balancer gets no WAF"
  }

  # defect 7: only the declared callers, on the production and the test listener
  assert {
    condition = (
      toset([for r in aws_vpc_security_group_ingress_rule.cidr : r.cidr_ipv4]) == toset(["10.60.0.0/16"])
      && toset([for r in aws_vpc_security_group_ingress_rule.cidr : r.from_port]) == toset([443, 8443])
    )
    error_message = "the ALB admits other networks than the declared ones (or not on both listeners)"
  }

  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.security_group : r.referenced_security_group_id]) == toset(["sg-0aaaaaaaaaaaaaaaa"])
    error_message = "the ALB does not admit exactly the declared caller security groups"
  }

  # defect 3: a path whose grpc-status is non-zero while order-grpc is not ready
  assert {
    condition = alltrue([
      for tg in aws_lb_target_group.grpc :
      one(tg.health_check).path == "/AWS.ALB/healthcheck" && one(tg.health_check).matcher == "0" && tg.protocol_version == "GRPC"
    ])
    error_message = "the target groups do not probe /AWS.ALB/healthcheck for grpc-status 0"
  }

  # blue/green: two target groups, production listener on blue, test listener on green
  assert {
    condition = (
      keys(aws_lb_target_group.grpc) == ["blue", "green"]
      && aws_lb_listener.https.port == 443
      && aws_lb_listener.test.port == 8443
      && aws_lb_listener.test.protocol == "HTTPS"
    )
    error_message = "no blue/green target group pair with a production (443) and a test (8443) listener"
  }
}

run "nobody_by_default" {
  command = plan

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.cidr) == 0 && length(aws_vpc_security_group_ingress_rule.security_group) == 0
    error_message = "the ALB admits callers nobody declared"
  }
}

run "public_only_with_waf" {
  command = apply

  variables {
    internal      = false
    allowed_cidrs = ["0.0.0.0/0"]
  }

  assert {
    condition     = aws_lb.this.internal == false && length(aws_wafv2_web_acl_association.this) == 1 && length(aws_wafv2_web_acl_logging_configuration.this) == 1
    error_message = "an internet-facing load balancer has no WAF web ACL (with logging)"
  }
}

# The worker reaches a public ALB from the NAT gateways' addresses (late_allowed_cidrs), one
# address for the whole fleet per gateway: the per-address rate limit must not count them, or
# it blocks the fleet (403, read as PERMISSION_DENIED) at under one order a second. Every other
# address is still limited, and the NAT addresses still meet the reputation and bad-input rules.
run "public_rate_limit_spares_the_systems_own_addresses" {
  command = apply

  variables {
    internal           = false
    allowed_cidrs      = ["0.0.0.0/0"]
    late_allowed_cidrs = ["203.0.113.10/32", "203.0.113.11/32"]
  }

  assert {
    condition     = toset(aws_wafv2_ip_set.own["this"].addresses) == toset(["203.0.113.10/32", "203.0.113.11/32"])
    error_message = "the NAT addresses are not in the WAF's own-addresses IP set"
  }

  assert {
    condition = one([
      for rule in aws_wafv2_web_acl.this["this"].rule :
      try(one(rule.statement[0].rate_based_statement[0].scope_down_statement[0].not_statement[0].statement[0].ip_set_reference_statement).arn, "none")
      if rule.name == "rate-limit-per-address"
    ]) == aws_wafv2_ip_set.own["this"].arn
    error_message = "the per-address rate limit counts the system's own (NAT) addresses"
  }

  assert {
    condition     = length(flatten([for rule in aws_wafv2_web_acl.this["this"].rule : [for action in rule.action : action.allow]])) == 0
    error_message = "a rule allows traffic outright: the own addresses must still meet the reputation and bad-input rules"
  }
}

# A region opened since 2022 (Zurich here) has no ELB account: `aws_elb_service_account`
# fails the plan there, so the bucket policy names the log-delivery service principal alone.
run "access_logs_in_a_region_without_an_elb_account" {
  command = plan

  override_data {
    target = data.aws_region.current
    values = { name = "eu-central-2" }
  }

  assert {
    condition     = length(data.aws_elb_service_account.this) == 0
    error_message = "the ELB account of a region that has none is read (the real provider fails the plan)"
  }
}

run "access_logs_in_a_region_with_an_elb_account" {
  command = plan

  assert {
    condition     = length(data.aws_elb_service_account.this) == 1
    error_message = "eu-west-1's ELB account is not in the access-log bucket policy"
  }
}
