variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`: queues are `<prefix>-orders.fifo` and `<prefix>-orders-dlq.fifo`."
  type        = string
}
