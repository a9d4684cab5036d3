# The role CodeDeploy uses to create task sets, move the listeners and read the alarms: AWS's
# managed policy for ECS blue/green deployments.

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  name               = "${coalesce(var.global_name_prefix, var.name_prefix)}-codedeploy-${var.service_name_short}"
  description        = "CodeDeploy blue/green deployments of ${var.service_name}"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSCodeDeployRoleForECS"
}
