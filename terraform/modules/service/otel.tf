# AWS Distro for OpenTelemetry collector, as a non-essential sidecar:
#   * scrapes the application's admin /metrics (Prometheus text) every 30 s and writes the
#     order_* metrics to CloudWatch as embedded metric format (namespace var.otel_collector
#     .metrics_namespace; the projector-lag alarm reads order_projector_lag_seconds there);
#   * receives OTLP traces on 127.0.0.1:4317 (gRPC) / 4318 (HTTP) and exports them to X-Ray.
# It shares the task's network namespace, so everything stays on 127.0.0.1.

locals {
  otel_config = local.otel ? templatefile("${path.module}/otel-collector.yaml.tftpl", {
    service     = var.service_name
    admin_port  = var.admin_port
    namespace   = var.otel_collector.metrics_namespace
    log_group   = aws_cloudwatch_log_group.metrics[0].name
    scrape_secs = var.otel_collector.scrape_interval_seconds
  }) : ""

  otel_container = local.otel ? {
    name              = "otel-collector"
    image             = var.otel_collector.image
    essential         = false
    memoryReservation = 64
    environment = [
      { name = "AOT_CONFIG_CONTENT", value = local.otel_config },
      { name = "AWS_REGION", value = data.aws_region.current.name },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.app.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "otel-collector"
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
    readonlyRootFilesystem = true
  } : null
}
