resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: CI passes it to `aws ecs run-task` (output security_group_id), a one-off task has no service to attach it to.
  name        = "${local.family}-task"
  description = "Migration job: PostgreSQL and the AWS endpoints, nothing else"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${local.family}-task", service = "migrate" })
}

resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = var.egress_rules

  security_group_id            = aws_security_group.this.id
  description                  = each.value.description
  cidr_ipv4                    = each.value.cidr_ipv4
  prefix_list_id               = each.value.prefix_list_id
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}
