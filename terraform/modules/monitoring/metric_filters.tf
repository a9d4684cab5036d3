# Log-based metrics (namespace var.app_metrics_namespace), from the services' JSON log lines:
#   ApiErrorCount     - order-grpc lines with "level": "ERROR"
#   WorkerFailedCount - order-worker lines containing FAILED (one per failed message)

resource "aws_cloudwatch_log_metric_filter" "api_errors" {
  name           = "${var.name_prefix}-api-error-count"
  log_group_name = var.grpc_log_group_name
  pattern        = "{ $.level = \"ERROR\" }"

  metric_transformation {
    name          = "ApiErrorCount"
    namespace     = var.app_metrics_namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_log_metric_filter" "worker_failed" {
  name           = "${var.name_prefix}-worker-failed-count"
  log_group_name = var.worker_log_group_name
  pattern        = "\"FAILED\""

  metric_transformation {
    name          = "WorkerFailedCount"
    namespace     = var.app_metrics_namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}
