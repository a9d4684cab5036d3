# Application Load Balancer in front of order-grpc: HTTPS (TLS 1.2/1.3, ACM certificate) on
# 443, HTTP/2 to the tasks with a gRPC target group whose health check calls
# grpc.health.v1.Health/Check and expects gRPC status 0 (SERVING).

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:No WAF: callers are internal services that authenticate with bearer tokens and ingress is limited to var.allowed_cidrs; WAF managed rules inspect HTTP/1 text bodies, not gRPC frames.
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

resource "aws_lb_target_group" "grpc" {
  name                 = "${var.name_prefix}-grpc"
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
    path                = "/grpc.health.v1.Health/Check"
    matcher             = "0"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc.arn
  }

  tags = var.tags
}
