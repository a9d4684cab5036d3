# Application Load Balancer in front of order-grpc: internal by default (callers are services in
# the VPC or in peered networks), HTTPS (TLS 1.2/1.3, ACM certificate), HTTP/2 to the tasks.
#
# Blue/green (CodeDeploy, modules/blue_green): two target groups, "blue" and "green". The
# production listener (443) forwards to the live one, the test listener (var.test_listener_port)
# to the replacement set while a deployment runs; CodeDeploy swaps them, so Terraform ignores
# the listeners' default actions after creation.
#
# Health check: `/AWS.ALB/healthcheck` (the ALB's own default gRPC path), which order-grpc answers
# with grpc-status 0 only while it is ready (database reachable and migrated) and 14
# (UNAVAILABLE) otherwise. `grpc.health.v1.Health/Check` cannot serve here: it reports
# NOT_SERVING inside a grpc-status 0 answer, and the ALB judges the status code only.

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:WAF is attached whenever the load balancer is internet-facing (waf.tf); an internal one is reached only from the declared caller networks and security groups.
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: on in prod, off in dev so the environment can be destroyed.
  name                       = "${var.name_prefix}-alb"
  load_balancer_type         = "application"
  internal                   = var.internal
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  enable_http2               = true
  # server-streaming RPCs (SubscribeEvents) stay open while events trickle in
  idle_timeout = var.idle_timeout_seconds

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = var.tags

  depends_on = [aws_s3_bucket_policy.access_logs]
}

locals {
  target_groups = toset(["blue", "green"])
}

resource "aws_lb_target_group" "grpc" {
  for_each = local.target_groups

  name                 = "${var.name_prefix}-grpc-${each.key}"
  port                 = var.target_port
  protocol             = "HTTP"
  protocol_version     = "GRPC"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check_path
    matcher             = "0"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { Name = "${var.name_prefix}-grpc-${each.key}" })
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc["blue"].arn
  }

  tags = var.tags

  lifecycle {
    # CodeDeploy points the listener at the other target group on every deployment
    ignore_changes = [default_action]
  }
}

# Test traffic: the replacement task set answers here before production traffic shifts to it.
resource "aws_lb_listener" "test" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.test_listener_port
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc["green"].arn
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [default_action]
  }
}
