output "vpc_id" {
  description = "Id of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets (load balancer)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (ECS tasks)."
  value       = aws_subnet.private[*].id
}

output "isolated_subnet_ids" {
  description = "Isolated subnets (database), without any route out of the VPC."
  value       = aws_subnet.isolated[*].id
}

output "endpoints_security_group_id" {
  description = "Security group of the interface endpoints (tasks need egress 443 to it)."
  value       = aws_security_group.endpoints.id
}

output "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint (tasks need egress 443 to it for ECR layers)."
  value       = aws_vpc_endpoint.s3.prefix_list_id
}

output "nat_public_ips" {
  description = "Public addresses of the NAT gateways (empty without NAT)."
  value       = aws_eip.nat[*].public_ip
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.flow_logs.name]
}

output "interface_endpoints" {
  description = "The AWS services reached through interface VPC endpoints (service name suffixes, sorted)."
  value       = sort(keys(aws_vpc_endpoint.interface))
}
