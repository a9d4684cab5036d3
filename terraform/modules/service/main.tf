# One ECS Fargate service: task definition (the application container plus, optionally, the
# OpenTelemetry collector sidecar), the service itself, optionally behind the ALB and/or in the
# Service Connect namespace. Deployments are either rolling (deployment controller ECS, with the
# circuit breaker rolling a failed one back) or blue/green (CODE_DEPLOY: CodeDeploy shifts the
# ALB between two task sets, see modules/blue_green).
#
# CI/CD owns the image: it registers new task definition revisions from the latest one and
# points the service at them, so Terraform ignores `task_definition` after creation. Capacity
# belongs to Application Auto Scaling (see the scaling module), so `desired_count` is ignored too,
# and under CODE_DEPLOY the live target group belongs to CodeDeploy (`load_balancer`).

data "aws_region" "current" {}

locals {
  family = "${var.name_prefix}-${var.service_name}"
  # IAM role names are unique per account, not per region
  role_prefix = "${coalesce(var.global_name_prefix, var.name_prefix)}-${var.service_name}"
  binary      = coalesce(var.binary, var.service_name)
  otel        = var.otel_collector != null
  container   = var.service_name

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

  # ECS's valueFrom: the secret's ARN, or ARN:json-key:version-stage: (a version stage without a
  # JSON key keeps the empty field)
  secret_sources = { for k, s in var.secrets : k => (
    s.json_key == null && s.version_stage == null ? s.secret_arn : "${s.secret_arn}:${s.json_key == null ? "" : s.json_key}:${s.version_stage == null ? "" : s.version_stage}:"
  ) }

  # What the binaries are given to drain (their default when unset): stopTimeout must leave
  # them time after it for the trace flush and the pool close.
  shutdown_grace_seconds = tonumber(lookup(local.environment, "ORDER_SHUTDOWN_GRACE_SECONDS", "30"))
  # The worker also lets a receive under way finish, past the grace if need be (its long poll,
  # ORDER_WORKER_WAIT_SECONDS, 20 when unset, at most 20: order-worker Consumer::shut_down):
  # it is done with its shutdown after the longer of the two, not their sum (the receive
  # began before SIGTERM and the grace counts from it).
  receive_wait_seconds = local.binary == "order-worker" ? min(20, tonumber(lookup(local.environment, "ORDER_WORKER_WAIT_SECONDS", "20"))) : 0
  shutdown_seconds     = max(local.shutdown_grace_seconds, local.receive_wait_seconds)

  app_container = merge(
    {
      name      = local.container
      image     = var.image
      essential = true

      portMappings = local.port_mappings
      environment  = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
      secrets = [for k in sort(keys(var.secrets)) : {
        name      = k
        valueFrom = local.secret_sources[k]
      }]

      # Liveness, not readiness: a database outage must not make ECS kill every task. Readiness
      # (database reachable and migrated) is what /readyz and, for order-grpc, the ALB's health
      # check path /AWS.ALB/healthcheck report (grpc-status 14 while not ready).
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

  lifecycle {
    precondition {
      condition     = var.stop_timeout_seconds >= local.shutdown_seconds + 10
      error_message = "${var.service_name}: stop_timeout_seconds (${var.stop_timeout_seconds}) must be at least ${local.receive_wait_seconds > 0 ? "the longer of ORDER_SHUTDOWN_GRACE_SECONDS (${local.shutdown_grace_seconds}) and ORDER_WORKER_WAIT_SECONDS (${local.receive_wait_seconds}: a receive under way is let finish past the grace)" : "ORDER_SHUTDOWN_GRACE_SECONDS (${local.shutdown_grace_seconds})"} + 10 = ${local.shutdown_seconds + 10}: SIGKILL would land before the release of unfinished work, the trace flush and the pool close that follow."
    }
  }
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

  deployment_controller {
    type = var.deployment_controller
  }

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # rolling deployments only: CodeDeploy rolls a blue/green deployment back on its alarms
  dynamic "deployment_circuit_breaker" {
    for_each = var.deployment_controller == "ECS" ? [1] : []
    content {
      enable   = true
      rollback = true
    }
  }

  dynamic "load_balancer" {
    for_each = var.load_balancer == null ? [] : [var.load_balancer.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = local.container
      container_port   = var.grpc_port
    }
  }

  health_check_grace_period_seconds = var.load_balancer == null ? null : 60

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
    ignore_changes = [task_definition, desired_count, load_balancer]
  }

  # A target group can be registered with a service only once a listener uses it ("target group
  # does not have an associated load balancer"): wait for the listeners, not just the group.
  depends_on = [var.load_balancer]
}
