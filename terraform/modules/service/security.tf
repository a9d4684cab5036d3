# The task's security group: no ingress unless a rule names its source security group, egress
# only where var.egress_rules says (AWS endpoints, the database, order-grpc for the worker).

resource "aws_security_group" "task" {
  name        = "${local.family}-task"
  description = "Tasks of ${local.family}"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${local.family}-task", service = var.service_name })
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = var.ingress_rules

  security_group_id            = aws_security_group.task.id
  description                  = each.value.description
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = var.egress_rules

  security_group_id            = aws_security_group.task.id
  description                  = each.value.description
  cidr_ipv4                    = each.value.cidr_ipv4
  prefix_list_id               = each.value.prefix_list_id
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}
