# The whole root, mocked: a plan and an apply (scripts/check-infra). The modules' own tests
# (terraform/modules/*/tests) look inside the composition.

mock_provider "aws" {
  source = "../../tests/mocks"
}

mock_provider "aws" {
  alias  = "dr"
  source = "../../tests/mocks"
}

variables {
  certificate_arn   = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  api_host_name     = "orders.example.com"
  github_repository = "example/order-ledger"
}

run "plan" {
  command = plan
}

run "apply" {
  command = apply

  assert {
    condition     = output.disaster_recovery == null
    error_message = "dev makes disaster-recovery copies"
  }

  assert {
    condition = alltrue([for k in ["CODEDEPLOY_APPLICATION", "CODEDEPLOY_GROUP", "GRPC_CONTAINER_PORT", "MIGRATION_TASK_FAMILY", "ECS_CLUSTER"] :
    contains(keys(output.github_environment_variables), k)])
    error_message = "a GitHub environment variable the deploy workflow reads is missing"
  }

  assert {
    condition     = output.alb_test_listener_port == 8443
    error_message = "no test listener for blue/green deployments"
  }
}

# The tuning settings terraform/README.md documents are variables of this root and reach the
# modules that use them.
run "tuning_settings_reach_the_modules" {
  command = apply

  variables {
    enable_nat_gateway                = true
    alb_internal                      = false
    interface_endpoints               = []
    worker_orders_per_second_per_task = 25
    worker_provider_timeout_ms        = 20000
    worker_concurrency                = 64
  }

  assert {
    condition = jsonencode(module.platform.tuning) == jsonencode({
      enable_nat_gateway                = true
      interface_endpoints               = []
      alb_internal                      = false
      worker_orders_per_second_per_task = 25
      worker_scale_out_task_minute      = 25 * 8 * 60
      worker_provider_timeout_ms        = 20000
      worker_concurrency                = 64
    })
    error_message = "a tuning setting of the root does not reach its module: ${jsonencode(module.platform.tuning)}"
  }
}

run "tuning_defaults" {
  command = apply

  assert {
    condition = jsonencode(module.platform.tuning) == jsonencode({
      enable_nat_gateway                = false
      interface_endpoints               = sort(["ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager", "xray", "ecs", "ecs-agent", "ecs-telemetry"])
      alb_internal                      = true
      worker_orders_per_second_per_task = 40
      worker_scale_out_task_minute      = 40 * 8 * 60
      worker_provider_timeout_ms        = 10000
      worker_concurrency                = null
    })
    error_message = "the root's tuning defaults are not the documented ones: ${jsonencode(module.platform.tuning)}"
  }
}

# What order-worker would refuse at start (1..=120000 ms, 1..=1000 messages), and a rate of 0,
# fail the plan at this root.
run "worker_settings_below_the_range_are_refused" {
  command = plan

  variables {
    worker_provider_timeout_ms        = 0
    worker_concurrency                = 0
    worker_orders_per_second_per_task = 0
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency, var.worker_orders_per_second_per_task]
}

run "worker_settings_above_the_range_are_refused" {
  command = plan

  variables {
    worker_provider_timeout_ms = 120001
    worker_concurrency         = 1001
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency]
}

run "worker_settings_must_be_whole_numbers" {
  command = plan

  variables {
    worker_provider_timeout_ms = 1500.5
    worker_concurrency         = 2.5
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency]
}

run "worker_settings_at_the_edges_of_the_range_pass" {
  command = plan

  variables {
    worker_provider_timeout_ms = 120000
    worker_concurrency         = 1000
  }
}

# Without NAT the tasks reach ECR, CloudWatch Logs, Secrets Manager and SQS only through the
# interface endpoints.
run "no_interface_endpoints_without_nat_is_refused" {
  command = plan

  variables {
    interface_endpoints = []
  }

  expect_failures = [var.interface_endpoints]
}

# docs/operations.md, "Connections near the limit": the connections of a deploy's peak (both
# services at twice their most tasks, each pool + 2) stay below max_connections.
run "database_connections_at_a_deploys_peak" {
  command = apply

  assert {
    condition     = output.database_connections.peak < output.database_connections.max_connections
    error_message = "a deploy's peak of ${output.database_connections.peak} database connections is not below max_connections (${output.database_connections.max_connections})"
  }
}
