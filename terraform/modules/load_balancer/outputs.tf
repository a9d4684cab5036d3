output "dns_name" {
  description = "DNS name of the load balancer (point the service's DNS record at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Hosted zone of the load balancer (for an alias record)."
  value       = aws_lb.this.zone_id
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn" {
  description = "ARN of the gRPC target group."
  value       = aws_lb_target_group.grpc.arn
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the gRPC target group (CloudWatch dimension TargetGroup)."
  value       = aws_lb_target_group.grpc.arn_suffix
}

output "security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}
