# The ECS cluster (Fargate only, Container Insights on) and its default Service Connect
# namespace. No service uses Service Connect today: order-grpc is deployed blue/green by
# CodeDeploy, which ECS does not combine with it, so the worker calls order-grpc through the ALB.

resource "aws_ecs_cluster" "this" {
  name = var.name_prefix

  setting {
    name  = "containerInsights"
    value = var.container_insights
  }

  service_connect_defaults {
    namespace = aws_service_discovery_http_namespace.this.arn
  }

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.container_insights]
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
    base              = 0
  }
}

resource "aws_service_discovery_http_namespace" "this" {
  name        = "${var.name_prefix}.internal"
  description = "Service Connect namespace of ${var.name_prefix}"
  tags        = var.tags
}
