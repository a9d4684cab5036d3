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

output "target_group_arns" {
  description = "ARN of the gRPC target groups, by colour (blue: live at creation, green: replacement)."
  value       = { for k, tg in aws_lb_target_group.grpc : k => tg.arn }
}

output "target_group_names" {
  description = "Names of the gRPC target groups, by colour (CodeDeploy deployment group)."
  value       = { for k, tg in aws_lb_target_group.grpc : k => tg.name }
}

output "listener_arns" {
  description = "ARN of the production (443) and test listeners."
  value = {
    production = aws_lb_listener.https.arn
    test       = aws_lb_listener.test.arn
  }
}

output "test_listener_port" {
  description = "Port of the test listener (the replacement task set during a blue/green deployment)."
  value       = aws_lb_listener.test.port
}

output "security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "web_acl_arn" {
  description = "WAF web ACL of an internet-facing load balancer (null when internal)."
  value       = try(aws_wafv2_web_acl.this["this"].arn, null)
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_s3_bucket.access_logs.bucket]
}

output "internal" {
  description = "Whether the load balancer is internal (false: internet-facing, with WAF)."
  value       = aws_lb.this.internal
}
