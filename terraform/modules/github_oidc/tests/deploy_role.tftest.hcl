# The deploy role of the CI workflow (mocked plan): what deploy/ci/ecs-deploy.sh calls must be
# allowed, and no more.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix             = "order-ledger-dev"
  github_repository       = "example/order-ledger"
  github_environment      = "dev"
  ecr_repository_arns     = ["arn:aws:ecr:eu-west-1:123456789012:repository/order-ledger-dev/order-grpc"]
  cluster_arn             = "arn:aws:ecs:eu-west-1:123456789012:cluster/order-ledger-dev"
  cluster_name            = "order-ledger-dev"
  service_arns            = ["arn:aws:ecs:eu-west-1:123456789012:service/order-ledger-dev/order-ledger-dev-order-grpc"]
  migration_task_family   = "order-ledger-dev-migrate"
  migration_log_group_arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/order-ledger-dev/migrate"
  pass_role_arns          = ["arn:aws:iam::123456789012:role/order-ledger-dev-order-grpc-task"]
  task_definition_families = [
    "order-ledger-dev-order-grpc",
    "order-ledger-dev-order-projector",
    "order-ledger-dev-order-worker",
    "order-ledger-dev-migrate",
  ]
  codedeploy = {
    application_arn      = "arn:aws:codedeploy:eu-west-1:123456789012:application:order-ledger-dev-order-grpc"
    deployment_group_arn = "arn:aws:codedeploy:eu-west-1:123456789012:deploymentgroup:order-ledger-dev-order-grpc/order-ledger-dev-order-grpc"
  }
}

run "deploy_role" {
  command = plan

  # defect 1: ecs-deploy.sh registers revisions with the previous revision's tags, which needs
  # ecs:TagResource; without it the first deploy fails with AccessDenied
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.deploy.statement :
      contains(s.actions, "ecs:TagResource")
      && alltrue([for r in s.resources : startswith(r, "arn:aws:ecs:eu-west-1:123456789012:task-definition/order-ledger-dev-")])
      && anytrue([for c in s.condition : c.variable == "ecs:CreateAction" && length(c.values) == 1 && contains(c.values, "RegisterTaskDefinition")])
    ])
    error_message = "the deploy role cannot tag the task definitions it registers (ecs:TagResource scoped by ecs:CreateAction = RegisterTaskDefinition)"
  }

  # defect 4: rollback lists a family's revisions; re-runs look up existing image tags
  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.deploy.statement : contains(s.actions, "ecs:ListTaskDefinitions")])
    error_message = "the deploy role cannot list task definition revisions (rollback)"
  }

  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.deploy.statement : contains(s.actions, "ecr:DescribeImages")])
    error_message = "the deploy role cannot see which image tags exist (skip the push of an existing tag)"
  }

  # blue/green: CI starts CodeDeploy deployments of order-grpc, in its deployment group only
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.deploy.statement :
      contains(s.actions, "codedeploy:CreateDeployment") && length(s.resources) == 1 && contains(s.resources, var.codedeploy.deployment_group_arn)
    ])
    error_message = "the deploy role cannot create CodeDeploy deployments in the order-grpc deployment group (only)"
  }
}
