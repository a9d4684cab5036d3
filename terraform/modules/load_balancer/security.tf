# ALB: HTTPS in (production and test listener) from the declared callers only, out only to the
# order-grpc tasks' gRPC port. No caller is open by default: name them in var.allowed_cidrs and
# var.allowed_security_group_ids.

resource "aws_security_group" "alb" {
  name        = "${var.name_prefix}-alb"
  description = "ALB: HTTPS from the declared callers, gRPC to the order-grpc tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name_prefix}-alb" })
}

locals {
  listener_ports = { production = 443, test = var.test_listener_port }

  cidr_ingress = merge([
    for listener, port in local.listener_ports : {
      for cidr in var.allowed_cidrs : "${listener}-${cidr}" => { cidr = cidr, port = port, listener = listener }
    }
  ]...)

  security_group_ingress = merge([
    for listener, port in local.listener_ports : {
      for name, id in var.allowed_security_group_ids : "${listener}-${name}" => { id = id, name = name, port = port, listener = listener }
    }
  ]...)
}

resource "aws_vpc_security_group_ingress_rule" "cidr" {
  for_each = local.cidr_ingress

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS (gRPC, ${each.value.listener} listener) from ${each.value.cidr}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_ingress_rule" "security_group" {
  for_each = local.security_group_ingress

  security_group_id            = aws_security_group.alb.id
  description                  = "HTTPS (gRPC, ${each.value.listener} listener) from ${each.value.name}"
  referenced_security_group_id = each.value.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

# Addresses known only after apply (the NAT gateways' public IPs, when the ALB is public): one
# rule per address, counted, so that the plan needs no value.
resource "aws_vpc_security_group_ingress_rule" "late_cidr" {
  count = length(var.late_allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS (gRPC) from ${var.late_allowed_cidrs_description}"
  cidr_ipv4         = var.late_allowed_cidrs[count.index]
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "targets" {
  security_group_id            = aws_security_group.alb.id
  description                  = "gRPC to the order-grpc tasks"
  referenced_security_group_id = var.target_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.target_port
  to_port                      = var.target_port
}
