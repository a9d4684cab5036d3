# The service module (mocked plan): the secrets' valueFrom, and the container's stopTimeout.
#
# stopTimeout: SIGKILL must not land before the binary is done
# with its shutdown. The worker waits for a receive under way (its long poll,
# ORDER_WORKER_WAIT_SECONDS, 20 by default) past its grace if need be (order-worker
# Consumer::shut_down): it is done after the longer of the two, then releases what it
# abandoned, flushes its deletes and traces.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix         = "order-ledger-dev"
  image               = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-ledger-dev/order-worker:bootstrap"
  admin_port          = 9466
  cluster_arn         = "arn:aws:ecs:eu-west-1:123456789012:cluster/order-ledger-dev"
  vpc_id              = "vpc-0123456789abcdef0"
  subnet_ids          = ["subnet-0123456789abcdef0"]
  kms_key_arn         = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  ecr_repository_arns = ["arn:aws:ecr:eu-west-1:123456789012:repository/order-ledger-dev/order-worker"]
}

# the defaults: grace 30, wait 20, stopTimeout 45
run "worker_defaults_pass" {
  command = plan

  variables {
    service_name = "order-worker"
  }

  assert {
    condition     = output.stop_timeout_seconds == 45 && output.shutdown_seconds == 30
    error_message = "the worker's defaults (grace 30 s, wait 20 s) do not give a shutdown of 30 s under a stopTimeout of 45 s"
  }
}

# grace 5, wait 20: the worker is done after 20 s, not 5; 25 s leaves 5 s for what follows
run "worker_long_poll_past_a_short_grace_is_refused" {
  command = plan

  variables {
    service_name         = "order-worker"
    environment          = { ORDER_SHUTDOWN_GRACE_SECONDS = "5", ORDER_WORKER_WAIT_SECONDS = "20" }
    stop_timeout_seconds = 25
  }

  expect_failures = [aws_ecs_task_definition.this]
}

# the same grace and wait with room for the margin
run "worker_long_poll_with_its_margin_passes" {
  command = plan

  variables {
    service_name         = "order-worker"
    environment          = { ORDER_SHUTDOWN_GRACE_SECONDS = "5", ORDER_WORKER_WAIT_SECONDS = "20" }
    stop_timeout_seconds = 30
  }

  assert {
    condition     = output.shutdown_seconds == 20
    error_message = "a worker with grace 5 s and wait 20 s is not counted as done after 20 s"
  }
}

# the other services have no long poll: their grace alone counts
run "other_service_counts_its_grace" {
  command = plan

  variables {
    service_name         = "order-projector"
    environment          = { ORDER_SHUTDOWN_GRACE_SECONDS = "5", ORDER_WORKER_WAIT_SECONDS = "20" }
    stop_timeout_seconds = 15
  }

  assert {
    condition     = output.shutdown_seconds == 5
    error_message = "a service without a long poll is not counted as done after its grace"
  }
}

# ECS's valueFrom of a secret: the whole secret, a JSON key of it, or a version stage of it
run "secret_sources" {
  command = plan

  variables {
    service_name = "order-grpc"
    secrets = {
      WHOLE    = { secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a-AbCdEf" }
      KEY      = { secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b-AbCdEf", json_key = "url" }
      PREVIOUS = { secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c-AbCdEf", version_stage = "AWSPREVIOUS" }
    }
  }

  assert {
    condition = {
      for s in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].secrets : s.name => s.valueFrom
      } == {
      WHOLE    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a-AbCdEf"
      KEY      = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b-AbCdEf:url::"
      PREVIOUS = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c-AbCdEf::AWSPREVIOUS:"
    }
    error_message = "a secret's valueFrom is not ARN[:json-key:version-stage:]"
  }
}
