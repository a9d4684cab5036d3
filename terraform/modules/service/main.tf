# One ECS Fargate service: task definition (the application container plus, optionally, the
# OpenTelemetry collector sidecar), the service itself with rolling deployments and automatic
# rollback, optionally behind the ALB and/or in the Service Connect namespace.
#
# CI/CD owns the image: it registers new task definition revisions from the latest one and
# points the service at them, so Terraform ignores `task_definition` after creation. Capacity
# belongs to Application Auto Scaling (see the scaling module), so `desired_count` is ignored too.

data "aws_region" "current" {}

locals {
  family    = "${var.name_prefix}-${var.service_name}"
  binary    = coalesce(var.binary, var.service_name)
  otel      = var.otel_collector != null
  container = var.service_name

  environment = merge(
    {
      LOG_FORMAT       = "json"
      RUST_LOG         = var.rust_log
      ORDER_ADMIN_ADDR = "0.0.0.0:${var.admin_port}"
    },
    var.grpc_port == null ? {} : { ORDER_GRPC_ADDR = "0.0.0.0:${var.grpc_port}" },
    local.otel ? {
      OTEL_SERVICE_NAME           = var.service_name
      OTEL_EXPORTER_OTLP_ENDPOINT = "http://127.0.0.1:4317"
      OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
      OTEL_RESOURCE_ATTRIBUTES    = "deployment.environment=${var.name_prefix}"
    } : {},
    var.environment,
  )

  port_mappings = concat(
    var.grpc_port == null ? [] : [{
      name          = "grpc"
      containerPort = var.grpc_port
      protocol      = "tcp"
      appProtocol   = "grpc"
    }],
    [{
      name          = "admin"
      containerPort = var.admin_port
      protocol      = "tcp"
      appProtocol   = "http"
    }],
  )

  app_container = merge(
    {
      name      = local.container
      image     = var.image
      essential = true

      portMappings = local.port_mappings
      environment  = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
      secrets = [for k in sort(keys(var.secrets)) : {
        name      = k
        valueFrom = var.secrets[k].json_key == null ? var.secrets[k].secret_arn : "${var.secrets[k].secret_arn}:${var.secrets[k].json_key}::"
      }]

      # Liveness, not readiness: a database outage must not make ECS kill every task. Readiness
      # (database reachable) is what the ALB's gRPC health check and /readyz report.
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/${local.binary}", "healthcheck", "--url", "http://127.0.0.1:${var.admin_port}${var.health_check_path}"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.app.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = var.service_name
          mode                  = "non-blocking"
          max-buffer-size       = "25m"
        }
      }

      readonlyRootFilesystem = true
      linuxParameters        = { initProcessEnabled = true }
      stopTimeout            = var.stop_timeout_seconds
      ulimits                = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    },
    var.command == null ? {} : { command = var.command },
  )

  containers = concat([local.app_container], local.otel ? [local.otel_container] : [])
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.containers)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  tags = merge(var.tags, { service = var.service_name })
}

resource "aws_ecs_service" "this" {
  name                    = local.family
  cluster                 = var.cluster_arn
  task_definition         = aws_ecs_task_definition.this.arn
  desired_count           = var.desired_count
  platform_version        = "LATEST"
  enable_execute_command  = false
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  capacity_provider_strategy {
    capacity_provider = var.capacity_provider
    weight            = 1
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.task.id]
    assign_public_ip = false
  }

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = local.container
      container_port   = var.grpc_port
    }
  }

  health_check_grace_period_seconds = var.target_group_arn == null ? null : 60

  dynamic "service_connect_configuration" {
    for_each = var.service_connect == null ? [] : [var.service_connect]
    content {
      enabled   = true
      namespace = service_connect_configuration.value.namespace_arn

      dynamic "service" {
        for_each = service_connect_configuration.value.server ? [var.grpc_port] : []
        content {
          port_name      = "grpc"
          discovery_name = var.service_name
          client_alias {
            port     = service.value
            dns_name = var.service_name
          }
        }
      }

      log_configuration {
        log_driver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.app.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "service-connect"
        }
      }
    }
  }

  tags = merge(var.tags, { service = var.service_name })

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }
}
