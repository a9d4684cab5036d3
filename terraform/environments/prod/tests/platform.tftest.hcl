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

# The standby of prod in the DR region (dr.tfvars.example), applied beside prod in the same
# account: none of its account-wide names is one of prod's, its database is restored from the
# replicated backups, and its images come from the repositories ECR replication made.
run "standby_in_the_dr_region" {
  command = apply

  variables {
    region                      = "eu-central-1"
    dr_region                   = null
    standby                     = true
    create_github_oidc_provider = false
    db_restore = {
      source_automated_backups_arn = "arn:aws:rds:eu-central-1:123456789012:auto-backup:ab-0123456789abcdefghijklmnopqrstuvwxyz0123"
    }
  }

  # the mocked provider answers eu-west-1 wherever it is pointed
  override_data {
    target = module.platform.data.aws_region.current
    values = { name = "eu-central-1" }
  }

  assert {
    condition     = length(output.account_wide_names) == length(run.apply.account_wide_names) && length(setintersection(toset(output.account_wide_names), toset(run.apply.account_wide_names))) == 0
    error_message = "the standby reuses an account-wide name of prod (an IAM role or the log bucket): its apply would collide: ${join(", ", setintersection(toset(output.account_wide_names), toset(run.apply.account_wide_names)))}"
  }

  assert {
    condition     = length(output.account_wide_names) >= 13 && alltrue([for n in output.account_wide_names : strcontains(n, "order-ledger-prod-eu-central-1-")])
    error_message = "an account-wide name of the standby does not carry its region"
  }

  assert {
    condition     = output.disaster_recovery == null
    error_message = "the standby makes disaster-recovery copies of its own"
  }
}
