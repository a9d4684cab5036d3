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

  # disaster recovery: backups replicated to a second region
  assert {
    condition     = output.disaster_recovery.region == "eu-central-1"
    error_message = "prod has no disaster-recovery copies in a second region"
  }

  assert {
    condition = alltrue([for k in ["CODEDEPLOY_APPLICATION", "CODEDEPLOY_GROUP", "GRPC_CONTAINER_PORT", "MIGRATION_TASK_FAMILY", "ECS_CLUSTER"] :
    contains(keys(output.github_environment_variables), k)])
    error_message = "a GitHub environment variable the deploy workflow reads is missing"
  }
}

# The settings the runbooks tell operators to change at this root are variables of it.
run "runbook_settings" {
  command = apply

  variables {
    db_credentials_version         = 2
    grpc_token_version             = 2
    grpc_wait_for_approval_minutes = 30
  }

  assert {
    condition = (
      module.platform.rotation_and_approval.db_credentials_version == 2
      && module.platform.rotation_and_approval.grpc_token_version == 2
      && module.platform.rotation_and_approval.grpc_wait_for_approval_minutes == 30
    )
    error_message = "a runbook setting of the prod root does not reach the platform"
  }
}
