# Blue/green deployments of one ECS service behind the ALB, by CodeDeploy: the replacement task
# set starts in the idle target group, answers on the test listener, then takes the production
# listener (all at once, or canary/linear by var.deployment_config_name); the old task set is
# kept var.termination_wait_minutes for an instant roll back. A deployment that fails, or during
# which one of var.rollback_alarm_names goes into ALARM, is rolled back automatically.
#
# CI starts deployments (deploy/ci/ecs-deploy.sh blue-green): the service's deployment
# controller is CODE_DEPLOY, so `aws ecs update-service --task-definition` is refused for it.

data "aws_partition" "current" {}

resource "aws_codedeploy_app" "this" {
  name             = var.service_name
  compute_platform = "ECS"
  tags             = var.tags
}

resource "aws_codedeploy_deployment_group" "this" {
  app_name               = aws_codedeploy_app.this.name
  deployment_group_name  = var.service_name
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = var.deployment_config_name

  deployment_style {
    deployment_type   = "BLUE_GREEN"
    deployment_option = "WITH_TRAFFIC_CONTROL"
  }

  ecs_service {
    cluster_name = var.cluster_name
    service_name = var.service_name
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout    = var.wait_for_approval_minutes == 0 ? "CONTINUE_DEPLOYMENT" : "STOP_DEPLOYMENT"
      wait_time_in_minutes = var.wait_for_approval_minutes == 0 ? null : var.wait_for_approval_minutes
    }

    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.termination_wait_minutes
    }
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [var.production_listener_arn]
      }

      test_traffic_route {
        listener_arns = [var.test_listener_arn]
      }

      dynamic "target_group" {
        for_each = var.target_group_names
        content {
          name = target_group.value
        }
      }
    }
  }

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }

  alarm_configuration {
    enabled = length(var.rollback_alarm_names) > 0
    alarms  = var.rollback_alarm_names
  }

  tags = var.tags
}
