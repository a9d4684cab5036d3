# order-grpc: target tracking on the service's average CPU.

resource "aws_appautoscaling_target" "grpc" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${var.grpc_service_name}"
  min_capacity       = var.grpc_min_capacity
  max_capacity       = var.grpc_max_capacity
}

resource "aws_appautoscaling_policy" "grpc_cpu" {
  name               = "${var.name_prefix}-grpc-cpu-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.grpc.service_namespace
  scalable_dimension = aws_appautoscaling_target.grpc.scalable_dimension
  resource_id        = aws_appautoscaling_target.grpc.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.grpc_cpu_target_percent
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
