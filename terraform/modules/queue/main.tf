# The orders queue and its dead-letter queue, both FIFO.
#
# The projector publishes with MessageGroupId = order id (per-order ordering) and
# MessageDeduplicationId = event id, so content-based deduplication stays off. After
# `max_receive_count` failed receives SQS moves a message to the DLQ; the worker also sends
# irrecoverable messages there itself.

resource "aws_sqs_queue" "dlq" {
  name                        = "${var.name_prefix}-orders-dlq.fifo"
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = var.dlq_retention_seconds
  sqs_managed_sse_enabled     = true

  tags = var.tags
}

resource "aws_sqs_queue" "orders" {
  name                        = "${var.name_prefix}-orders.fifo"
  fifo_queue                  = true
  content_based_deduplication = false
  # high-throughput FIFO: ordering and deduplication per message group (= per order)
  deduplication_scope        = "messageGroup"
  fifo_throughput_limit      = "perMessageGroupId"
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the orders queue may dead-letter into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.orders.arn]
  })
}
