# order-projector: a fixed number of tasks (one active per subscription through advisory locks,
# the others on standby). A scalable target with min = max keeps the count in Terraform while
# the service itself ignores desired_count.

resource "aws_appautoscaling_target" "projector" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${var.projector_service_name}"
  min_capacity       = var.projector_count
  max_capacity       = var.projector_count
}
