# ECS lifecycle events -> `<prefix>-alerts`, instead of polling RunningTaskCount:
#   task-stopped   - a service task stopped for any reason other than a deployment or scale-in
#                    (crash, OOM, failed health check, failed start, manual stop);
#   service-events - service actions and deployment state changes of level WARN or ERROR
#                    (cannot place tasks, deployment failed, circuit-breaker rollback).

resource "aws_cloudwatch_event_rule" "task_stopped" {
  name        = "${var.name_prefix}-ecs-task-stopped"
  description = "ECS service task of ${var.cluster_name} stopped unexpectedly"

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn    = [var.cluster_arn]
      lastStatus    = ["STOPPED"]
      group         = [{ prefix = "service:" }]
      stoppedReason = [{ "anything-but" = { prefix = "Scaling activity initiated by" } }]
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "task_stopped" {
  rule      = aws_cloudwatch_event_rule.task_stopped.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      group  = "$.detail.group"
      task   = "$.detail.taskArn"
      code   = "$.detail.stopCode"
      reason = "$.detail.stoppedReason"
    }
    input_template = "\"${var.name_prefix}: ECS task of <group> STOPPED (<code>): <reason>. Task: <task>\""
  }
}

resource "aws_cloudwatch_event_rule" "service_events" {
  name        = "${var.name_prefix}-ecs-service-events"
  description = "ECS service action / deployment WARN or ERROR events in ${var.cluster_name}"

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Service Action", "ECS Deployment State Change"]
    resources     = [{ prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${var.cluster_name}/" }]
    detail = {
      eventType = ["WARN", "ERROR"]
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "service_events" {
  rule      = aws_cloudwatch_event_rule.service_events.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      kind     = "$.detail-type"
      event    = "$.detail.eventName"
      level    = "$.detail.eventType"
      resource = "$.resources[0]"
      reason   = "$.detail.reason"
    }
    input_template = "\"${var.name_prefix}: <kind> <level> <event> on <resource>: <reason>\""
  }
}
