# Container Insights would create its performance log group itself, without retention.

resource "aws_cloudwatch_log_group" "container_insights" {
  #checkov:skip=CKV_AWS_338:Performance events feed the Container Insights metrics; a long retention only adds cost (var.log_retention_days).
  name              = "/aws/ecs/containerinsights/${var.name_prefix}/performance"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}
