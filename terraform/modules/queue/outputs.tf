output "queue_arn" {
  description = "ARN of the orders queue."
  value       = aws_sqs_queue.orders.arn
}

output "queue_url" {
  description = "URL of the orders queue (ORDERS_QUEUE_URL)."
  value       = aws_sqs_queue.orders.id
}

output "queue_name" {
  description = "Name of the orders queue (CloudWatch dimension QueueName)."
  value       = aws_sqs_queue.orders.name
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue (ORDERS_DLQ_URL)."
  value       = aws_sqs_queue.dlq.id
}

output "dlq_name" {
  description = "Name of the dead-letter queue (CloudWatch dimension QueueName)."
  value       = aws_sqs_queue.dlq.name
}
