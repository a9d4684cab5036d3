# What a deploy may do, and nothing else:
#   push to (and read back from) the project's ECR repositories, and see which tags exist;
#   read task definitions, list a family's revisions (rollback) and register new revisions,
#   tagged like the previous one (ecs:TagResource, only while registering);
#   run the migration task definition on the cluster and watch it;
#   point the rolling services at new revisions and watch them;
#   start and watch CodeDeploy blue/green deployments of order-grpc;
#   pass exactly the services' and the migration's execution and task roles to ECS;
#   read the migration job's log (to show it in the workflow).

data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
  ecs_arn   = "arn:${local.partition}:ecs:${local.region}:${local.account}"
}

data "aws_iam_policy_document" "deploy" {
  statement {
    sid       = "EcrAuthToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPushProjectImages"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = var.ecr_repository_arns
  }

  statement {
    sid       = "EcsTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions", "ecs:RegisterTaskDefinition"]
    resources = ["*"] # none of the three supports resource-level permissions
  }

  # RegisterTaskDefinition with tags also needs TagResource ("tag on create"); the condition
  # allows tagging only as part of registering a revision of the project's families.
  statement {
    sid       = "EcsTagNewRevisions"
    actions   = ["ecs:TagResource"]
    resources = [for family in var.task_definition_families : "${local.ecs_arn}:task-definition/${family}:*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition"]
    }
  }

  statement {
    sid       = "EcsRunMigration"
    actions   = ["ecs:RunTask"]
    resources = ["${local.ecs_arn}:task-definition/${var.migration_task_family}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.cluster_arn]
    }
  }

  statement {
    sid       = "EcsWatchTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = ["${local.ecs_arn}:task/${var.cluster_name}/*"]
  }

  statement {
    sid       = "EcsRollServices"
    actions   = ["ecs:UpdateService", "ecs:DescribeServices"]
    resources = var.service_arns
  }

  dynamic "statement" {
    for_each = var.codedeploy == null ? [] : [var.codedeploy]
    content {
      sid       = "CodeDeployBlueGreen"
      actions   = ["codedeploy:CreateDeployment", "codedeploy:GetDeployment", "codedeploy:StopDeployment", "codedeploy:ListDeployments"]
      resources = [statement.value.deployment_group_arn]
    }
  }

  dynamic "statement" {
    for_each = var.codedeploy == null ? [] : [var.codedeploy]
    content {
      sid       = "CodeDeployRevisions"
      actions   = ["codedeploy:RegisterApplicationRevision", "codedeploy:GetApplicationRevision"]
      resources = [statement.value.application_arn]
    }
  }

  dynamic "statement" {
    for_each = var.codedeploy == null ? [] : [var.codedeploy]
    content {
      sid       = "CodeDeployConfigs"
      actions   = ["codedeploy:GetDeploymentConfig"]
      resources = ["arn:${local.partition}:codedeploy:${local.region}:${local.account}:deploymentconfig:*"]
    }
  }

  statement {
    sid       = "PassOnlyTheTaskRoles"
    actions   = ["iam:PassRole"]
    resources = var.pass_role_arns

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "ReadMigrationLog"
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents"]
    resources = [var.migration_log_group_arn, "${var.migration_log_group_arn}:*"]
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
