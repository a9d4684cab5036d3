# The composition (mocked apply), seen through the child modules' outputs: what the roots'
# tests cannot reach. Listener ARNs are made distinct so that the wiring can be told apart.

mock_provider "aws" {
  source = "../../tests/mocks"
}

mock_provider "aws" {
  alias  = "dr"
  source = "../../tests/mocks"
}

override_resource {
  target = module.load_balancer.aws_lb_listener.https
  values = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/0123456789abcdef/aaaaaaaaaaaaaaaa" }
}

override_resource {
  target = module.load_balancer.aws_lb_listener.test
  values = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/0123456789abcdef/bbbbbbbbbbbbbbbb" }
}

variables {
  project           = "order-ledger"
  certificate_arn   = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  api_host_name     = "orders.example.com"
  github_repository = "example/order-ledger"

  # dev's sizes: a deploy's peak of database connections, 2 x (2 + 1) x (8 + 2) = 60, stays
  # below the default max_connections (80), as check database_connections_at_a_deploys_peak
  # requires
  grpc_max_capacity = 2
  db_pool_size      = 8
}

run "dev" {
  command = apply

  variables {
    environment         = "dev"
    deletion_protection = false
  }

  # least privilege: the worker's token reads orders and drives the saga, nothing else
  assert {
    condition     = module.grpc.environment["ORDER_GRPC_AUTH_SCOPES"] == "worker=orders.read+orders.saga"
    error_message = "order-grpc does not limit the worker's token to orders.read and orders.saga"
  }

  # a command's events are named by its identity unless an upgrade says otherwise
  assert {
    condition     = module.grpc.environment["ORDER_GRPC_COMMAND_EVENT_IDS"] == "identity"
    error_message = "order-grpc does not name a command's events by their identity by default"
  }

  # the worker's token reaches order-grpc under the name its scopes give, and no other token
  assert {
    condition     = [for s in module.grpc.secret_names : s if startswith(s, "ORDER_GRPC_AUTH_TOKEN")] == ["ORDER_GRPC_AUTH_TOKEN_WORKER"]
    error_message = "order-grpc does not read the worker's token as ORDER_GRPC_AUTH_TOKEN_WORKER (and nothing else)"
  }

  # defect 5: the service registers with its target group only after the listeners exist
  assert {
    condition = toset(module.grpc.load_balancer_listener_arns) == toset([
      "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/0123456789abcdef/aaaaaaaaaaaaaaaa",
      "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/0123456789abcdef/bbbbbbbbbbbbbbbb",
    ])
    error_message = "order-grpc's ECS service does not wait for the ALB listeners"
  }

  # defect 6: the pull-through cache prefix (unique per account and region) names the environment
  assert {
    condition     = module.ecr.pull_through_prefix == "order-ledger-dev/ecr-public"
    error_message = "the ECR pull-through cache prefix is not environment-prefixed: dev and prod collide in one account"
  }

  # defect 7: internal by default, hence no WAF
  assert {
    condition     = module.load_balancer.web_acl_arn == null
    error_message = "the ALB is internet-facing by default"
  }

  # blue/green for order-grpc, rolling updates for the projector and the worker
  assert {
    condition = (
      module.grpc.deployment_controller == "CODE_DEPLOY"
      && module.projector.deployment_controller == "ECS"
      && module.worker.deployment_controller == "ECS"
    )
    error_message = "order-grpc is not deployed by CodeDeploy, or the projector / worker are"
  }

  assert {
    condition = toset(module.grpc_blue_green.rollback_alarm_names) == toset([
      "order-ledger-dev-alb-5xx", "order-ledger-dev-tg-5xx", "order-ledger-dev-alb-latency-p95", "order-ledger-dev-api-error-spike",
    ])
    error_message = "a blue/green deployment is not rolled back on the API alarms"
  }

  assert {
    condition     = output.github_environment_variables.CODEDEPLOY_APPLICATION == module.grpc_blue_green.application_name && output.github_environment_variables.CODEDEPLOY_GROUP == module.grpc_blue_green.deployment_group_name
    error_message = "the GitHub environment variables do not name the CodeDeploy application and group"
  }

  # the alarms the seeds list beyond the reference catalogue
  assert {
    condition = length(setsubtract([
      "order-ledger-dev-queue-oldest-message-age",
      "order-ledger-dev-rds-connections-high",
      "order-ledger-dev-ecs-cpu-high-grpc", "order-ledger-dev-ecs-cpu-high-projector", "order-ledger-dev-ecs-cpu-high-worker",
      "order-ledger-dev-ecs-memory-high-grpc", "order-ledger-dev-ecs-memory-high-projector", "order-ledger-dev-ecs-memory-high-worker",
    ], module.monitoring.alarm_names)) == 0
    error_message = "an alarm of the seeds is missing (oldest message age, ECS CPU / memory per service, RDS connections)"
  }

  assert {
    condition     = output.disaster_recovery == null
    error_message = "dev makes disaster-recovery copies without dr_region"
  }

  # SIGKILL lands after the shutdown, not as it ends: the trace flush and the pool close come
  # after the grace (for the worker, after the longer of its grace and its long-poll wait)
  assert {
    condition = alltrue([for s in [module.grpc, module.projector, module.worker] :
      s.stop_timeout_seconds >= s.shutdown_seconds + 10
    ])
    error_message = "a service's stopTimeout leaves less than 10 s after its shutdown (ORDER_SHUTDOWN_GRACE_SECONDS; the worker: or ORDER_WORKER_WAIT_SECONDS if longer)"
  }

  # the worker's providers: the simulation unless told otherwise; an alarm per breaker
  assert {
    condition     = module.worker.environment.ORDER_WORKER_PROVIDERS == "simulated" && !contains(module.worker.secret_names, "ORDER_PROVIDER_PAYMENT_TOKEN")
    error_message = "the worker does not default to its provider simulation"
  }

  assert {
    condition = length(setsubtract([
      "order-ledger-dev-worker-circuit-open-inventory", "order-ledger-dev-worker-circuit-open-payment", "order-ledger-dev-worker-circuit-open-shipping",
    ], module.monitoring.alarm_names)) == 0
    error_message = "an open provider circuit breaker raises no alarm"
  }
}

run "http_providers" {
  command = apply

  variables {
    environment      = "dev"
    worker_providers = "http"
    worker_provider_endpoints = {
      inventory = { url = "https://inventory.example.internal" }
      payment   = { url = "https://payments.example.internal", client_certificate = true, ca_pem = "-----BEGIN CERTIFICATE-----" }
      shipping  = { url = "https://shipping.example.internal", token = false, client_certificate = true }
    }
    worker_provider_egress_cidrs = ["10.60.0.0/16"]
  }

  assert {
    condition = (
      module.worker.environment.ORDER_WORKER_PROVIDERS == "http"
      && module.worker.environment.ORDER_PROVIDER_PAYMENT_URL == "https://payments.example.internal"
      && module.worker.environment.ORDER_PROVIDER_PAYMENT_CA == "-----BEGIN CERTIFICATE-----"
      && !contains(keys(module.worker.environment), "ORDER_PROVIDER_PAYMENT_TOKEN")
    )
    error_message = "the worker's task definition does not carry the provider settings"
  }

  assert {
    condition = toset([for s in module.worker.secret_names : s if startswith(s, "ORDER_PROVIDER_")]) == toset([
      "ORDER_PROVIDER_INVENTORY_TOKEN", "ORDER_PROVIDER_PAYMENT_TOKEN",
      "ORDER_PROVIDER_PAYMENT_CLIENT_CERT", "ORDER_PROVIDER_SHIPPING_CLIENT_CERT",
    ])
    error_message = "the provider credentials are not read from Secrets Manager, one secret per provider and kind"
  }
}

run "http_providers_need_all_three" {
  command = plan

  variables {
    environment               = "dev"
    worker_providers          = "http"
    worker_provider_endpoints = { payment = { url = "https://payments.example.internal" } }
  }

  expect_failures = [var.worker_provider_endpoints]
}

run "provider_urls_must_be_https" {
  command = plan

  variables {
    environment = "dev"
    worker_provider_endpoints = {
      inventory = { url = "http://inventory.example.internal" }
    }
  }

  expect_failures = [var.worker_provider_endpoints]
}

# Calling services declared in grpc_callers: one generated token each, in a secret of its own,
# read by order-grpc under the caller's name with exactly its scopes; the worker sees none.
run "grpc_callers" {
  command = apply

  variables {
    environment = "dev"
    grpc_callers = {
      checkout = { scopes = ["orders.read", "orders.place", "orders.read"] }
      reports  = { scopes = ["orders.read"], token_version = 3 }
    }
  }

  assert {
    condition     = module.grpc.environment["ORDER_GRPC_AUTH_SCOPES"] == "worker=orders.read+orders.saga,checkout=orders.place+orders.read,reports=orders.read"
    error_message = "order-grpc does not give each caller exactly its declared scopes"
  }

  assert {
    condition = [for s in module.grpc.secret_names : s if startswith(s, "ORDER_GRPC_AUTH_TOKEN")] == [
      "ORDER_GRPC_AUTH_TOKEN_CHECKOUT", "ORDER_GRPC_AUTH_TOKEN_REPORTS", "ORDER_GRPC_AUTH_TOKEN_WORKER",
    ]
    error_message = "order-grpc does not read one token variable per caller"
  }

  assert {
    condition = (
      aws_secretsmanager_secret.grpc_caller_token["checkout"].name == "order-ledger-dev/grpc/callers/checkout"
      && aws_secretsmanager_secret_version.grpc_caller_token["reports"].secret_string_wo_version == 3
      && aws_secretsmanager_secret_version.grpc_caller_token["checkout"].secret_string_wo_version == 1
      && output.grpc_callers["reports"].secret_name == "order-ledger-dev/grpc/callers/reports"
      && join(",", output.grpc_callers["checkout"].scopes) == "orders.place,orders.read"
    )
    error_message = "the callers' secrets, token versions or output are wrong"
  }

  assert {
    condition     = length([for s in module.worker.secret_names : s if startswith(s, "ORDER_GRPC_AUTH_TOKEN_")]) == 0
    error_message = "the worker reads a caller's token"
  }
}

run "grpc_caller_names_are_checked" {
  command = plan

  variables {
    environment  = "dev"
    grpc_callers = { "Checkout-API" = { scopes = ["orders.place"] } }
  }

  expect_failures = [var.grpc_callers]
}

# The longest project that fits prod (14 characters) plans; one more character, or an upper-case
# letter, fails at the variable instead of at ECR's prefix or a target group's name.
run "a_project_name_that_fits" {
  command = plan

  variables {
    environment = "prod"
    project     = "acme-ledger-eu"
  }

  assert {
    condition     = module.ecr.pull_through_prefix == "acme-ledger-eu-prod/ecr-public"
    error_message = "the project name is not the first part of the names"
  }
}

run "a_project_name_too_long_for_the_names_is_refused" {
  command = plan

  variables {
    environment = "prod"
    project     = "acme-ledger-eu1"
  }

  expect_failures = [var.project]
}

run "a_project_name_with_upper_case_is_refused" {
  command = plan

  variables {
    environment = "dev"
    project     = "Order-Ledger"
  }

  expect_failures = [var.project]
}

run "grpc_caller_scopes_are_checked" {
  command = plan

  variables {
    environment  = "dev"
    grpc_callers = { checkout = { scopes = ["orders.place", "orders.write"] } }
  }

  expect_failures = [var.grpc_callers]
}

run "grpc_callers_need_a_scope" {
  command = plan

  variables {
    environment  = "dev"
    grpc_callers = { checkout = { scopes = [] } }
  }

  expect_failures = [var.grpc_callers]
}

run "grpc_callers_may_not_take_the_workers_name" {
  command = plan

  variables {
    environment  = "dev"
    grpc_callers = { worker = { scopes = ["orders.admin"] } }
  }

  expect_failures = [var.grpc_callers]
}

# A rotation of the worker's token (grpc_token_version + 1) with grpc_token_accept_previous:
# order-grpc also accepts the token the secret held before the rotation (its AWSPREVIOUS
# version, which Secrets Manager keeps when a new value is put) as worker_previous, with the
# worker's scopes, so that the workers still running hold a token order-grpc accepts until
# their own deploy ends. The worker reads only the current one.
run "worker_token_rotation_keeps_the_previous_token" {
  command = apply

  variables {
    environment                = "dev"
    grpc_token_version         = 2
    grpc_token_accept_previous = true
  }

  assert {
    condition     = module.grpc.environment["ORDER_GRPC_AUTH_SCOPES"] == "worker=orders.read+orders.saga,worker_previous=orders.read+orders.saga"
    error_message = "order-grpc does not give the previous worker token the worker's scopes"
  }

  assert {
    condition = (
      module.grpc.secret_sources["ORDER_GRPC_AUTH_TOKEN_WORKER"] == aws_secretsmanager_secret.worker_grpc_token.arn
      && module.grpc.secret_sources["ORDER_GRPC_AUTH_TOKEN_WORKER_PREVIOUS"] == "${aws_secretsmanager_secret.worker_grpc_token.arn}::AWSPREVIOUS:"
    )
    error_message = "order-grpc does not read the worker token's current and previous versions"
  }

  assert {
    condition     = module.worker.secret_sources["ORDER_GRPC_AUTH_TOKEN"] == aws_secretsmanager_secret.worker_grpc_token.arn
    error_message = "the worker does not read the current version of its token"
  }
}

# Until the next apply without it: order-grpc accepts the current worker token only
run "previous_worker_token_is_dropped_after_the_rotation" {
  command = apply

  variables {
    environment        = "dev"
    grpc_token_version = 2
  }

  assert {
    condition = (
      module.grpc.environment["ORDER_GRPC_AUTH_SCOPES"] == "worker=orders.read+orders.saga"
      && !contains(module.grpc.secret_names, "ORDER_GRPC_AUTH_TOKEN_WORKER_PREVIOUS")
    )
    error_message = "order-grpc still accepts the previous worker token"
  }
}

# Before the first rotation there is no previous version: a task that names one cannot start
run "previous_worker_token_needs_a_rotation" {
  command = plan

  variables {
    environment                = "dev"
    grpc_token_accept_previous = true
  }

  expect_failures = [var.grpc_token_accept_previous]
}

run "grpc_callers_may_not_take_the_previous_workers_name" {
  command = plan

  variables {
    environment  = "dev"
    grpc_callers = { worker_previous = { scopes = ["orders.admin"] } }
  }

  expect_failures = [var.grpc_callers]
}

run "prod" {
  command = apply

  variables {
    environment              = "prod"
    db_backup_retention_days = 35
    dr_region                = "eu-central-1"
  }

  assert {
    condition     = module.ecr.pull_through_prefix == "order-ledger-prod/ecr-public"
    error_message = "the ECR pull-through cache prefix is not environment-prefixed"
  }

  assert {
    condition     = output.disaster_recovery.region == "eu-central-1" && output.disaster_recovery.backup_replication_arn != null
    error_message = "no replicated database backups in the DR region"
  }
}

run "prod_with_read_replica" {
  command = apply

  variables {
    environment     = "prod"
    db_read_replica = true
  }

  assert {
    condition     = module.database.replica_identifier == "order-ledger-prod-db-replica"
    error_message = "db_read_replica = true made no read replica"
  }

  assert {
    condition     = contains(module.grpc.secret_names, "ORDER_GRPC_READ_DATABASE_URL") && module.database.read_url_secret_key == "read_url"
    error_message = "order-grpc is not given the read replica's URL (ORDER_GRPC_READ_DATABASE_URL from the grpc login secret's read_url)"
  }

  assert {
    condition     = contains(module.monitoring.alarm_names, "order-ledger-prod-replica-lag")
    error_message = "a read replica without a replica-lag alarm"
  }
}

run "no_read_replica_by_default" {
  command = plan

  variables {
    environment = "prod"
  }

  assert {
    condition     = module.database.replica_identifier == null && !contains(module.grpc.secret_names, "ORDER_GRPC_READ_DATABASE_URL")
    error_message = "a read replica (or its URL) without db_read_replica"
  }

  assert {
    condition     = !contains(module.monitoring.alarm_names, "order-ledger-prod-replica-lag")
    error_message = "a replica-lag alarm without a read replica"
  }
}

run "public_alb_needs_nat" {
  command = plan

  variables {
    environment  = "prod"
    alb_internal = false
  }

  expect_failures = [var.alb_internal]
}

run "approval_before_traffic_shifts" {
  command = apply

  variables {
    environment                    = "dev"
    grpc_wait_for_approval_minutes = 30
  }

  assert {
    condition = (
      module.grpc_blue_green.deployment_ready_option.action_on_timeout == "STOP_DEPLOYMENT"
      && module.grpc_blue_green.deployment_ready_option.wait_time_in_minutes == 30
    )
    error_message = "grpc_wait_for_approval_minutes does not reach the deployment group"
  }
}

# A window longer than the deploy job can wait for would have GitHub kill the job mid-deploy.
run "approval_window_longer_than_the_deploy_job_is_refused" {
  command = plan

  variables {
    environment                    = "dev"
    grpc_wait_for_approval_minutes = 46
  }

  expect_failures = [var.grpc_wait_for_approval_minutes]
}

# A standby in the DR region: the images are the replicated repositories, read and not created;
# its own pull-through cache takes a prefix of its own; nothing is copied to another region.
run "standby" {
  command = apply

  variables {
    environment              = "prod"
    db_backup_retention_days = 35
    standby                  = true
    db_restore = {
      source_automated_backups_arn = "arn:aws:rds:eu-central-1:123456789012:auto-backup:ab-0123456789abcdefghijklmnopqrstuvwxyz0123"
      restore_time                 = "2026-05-04T13:20:00Z"
    }
  }

  assert {
    condition     = module.ecr.pull_through_prefix == "order-ledger-prod/ecr-dr"
    error_message = "the standby's pull-through cache takes the primary's prefix, whose replicated repositories are already there"
  }

  assert {
    condition     = length(module.ecr.repository_urls) == 4 && output.disaster_recovery == null
    error_message = "the standby does not find its four replicated repositories, or copies to a region of its own"
  }

  assert {
    condition     = contains(output.account_wide_names, "order-ledger-prod-eu-west-1-order-grpc-task") && contains(output.account_wide_names, "order-ledger-prod-eu-west-1-alb-logs-123456789012")
    error_message = "the standby's IAM roles and log bucket do not carry its region"
  }
}

run "standby_makes_no_copies_of_its_own" {
  command = plan

  variables {
    environment = "prod"
    standby     = true
    dr_region   = "eu-central-1"
  }

  expect_failures = [var.standby]
}

run "standby_does_not_create_the_accounts_oidc_provider" {
  command = plan

  variables {
    environment                 = "prod"
    standby                     = true
    create_github_oidc_provider = true
  }

  expect_failures = [var.standby]
}

run "restore_needs_one_source" {
  command = plan

  variables {
    environment = "prod"
    db_restore  = { restore_time = "2026-05-04T13:20:00Z" }
  }

  expect_failures = [var.db_restore]
}

run "restore_time_must_be_a_time" {
  command = plan

  variables {
    environment = "prod"
    db_restore  = { source_db_instance_identifier = "order-ledger-prod-db", restore_time = "yesterday" }
  }

  expect_failures = [var.db_restore]
}

run "command_event_ids_random_for_an_upgrade" {
  command = plan

  variables {
    environment            = "dev"
    grpc_command_event_ids = "random"
  }

  assert {
    condition     = module.grpc.environment["ORDER_GRPC_COMMAND_EVENT_IDS"] == "random"
    error_message = "order-grpc does not get the event ids asked for"
  }
}

run "command_event_ids_refuses_anything_else" {
  command = plan

  variables {
    environment            = "dev"
    grpc_command_event_ids = "v7"
  }

  expect_failures = [var.grpc_command_event_ids]
}

# What the binaries refuse at start fails the plan instead: order-worker takes a provider
# timeout of 1..=120000 ms and a concurrency of 1..=1000, order-grpc and the projector a pool of
# 1..=1000 connections (whole numbers).
run "binary_settings_below_the_range_are_refused" {
  command = plan

  variables {
    environment                = "dev"
    worker_provider_timeout_ms = 0
    worker_concurrency         = 0
    db_pool_size               = 0
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency, var.db_pool_size]
}

run "binary_settings_above_the_range_are_refused" {
  command = plan

  variables {
    environment                = "dev"
    worker_provider_timeout_ms = 120001
    worker_concurrency         = 1001
    db_pool_size               = 1001
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency, var.db_pool_size]
}

run "binary_settings_must_be_whole_numbers" {
  command = plan

  variables {
    environment                = "dev"
    worker_provider_timeout_ms = 1500.5
    worker_concurrency         = 2.5
    db_pool_size               = 7.5
  }

  expect_failures = [var.worker_provider_timeout_ms, var.worker_concurrency, var.db_pool_size]
}

run "binary_settings_reach_the_tasks" {
  command = apply

  variables {
    environment                = "dev"
    deletion_protection        = false
    worker_provider_timeout_ms = 120000
    worker_concurrency         = 1000
    db_pool_size               = 1
  }

  assert {
    condition = (
      module.worker.environment["ORDER_WORKER_PROVIDER_TIMEOUT_MS"] == "120000"
      && module.worker.environment["ORDER_WORKER_CONCURRENCY"] == "1000"
      && module.grpc.environment["ORDER_DB_POOL_SIZE"] == "1"
      && module.projector.environment["ORDER_DB_POOL_SIZE"] == "1"
      && !contains(keys(module.worker.environment), "ORDER_DB_POOL_SIZE")
    )
    error_message = "the worker's provider timeout and concurrency, or the services' pool size, do not reach their tasks"
  }
}

run "no_interface_endpoints_need_nat" {
  command = plan

  variables {
    environment         = "dev"
    interface_endpoints = ["xray"]
  }

  expect_failures = [var.interface_endpoints]
}

# a deploy's peak of database connections above max_connections is reported
run "database_connections_above_max_connections" {
  command = plan

  variables {
    environment  = "dev"
    db_pool_size = 16
  }

  expect_failures = [check.database_connections_at_a_deploys_peak]
}
