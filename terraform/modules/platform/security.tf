# Network paths every task needs: the AWS APIs through the interface endpoints, image layers
# from S3 through the gateway endpoint, and (only with NAT) HTTPS to the internet.

locals {
  aws_api_egress = merge(
    {
      aws-endpoints = {
        port              = 443
        description       = "AWS APIs through the interface VPC endpoints"
        security_group_id = module.network.endpoints_security_group_id
      }
      s3-gateway = {
        port           = 443
        description    = "ECR image layers from S3 through the gateway endpoint"
        prefix_list_id = module.network.s3_prefix_list_id
      }
    },
    var.enable_nat_gateway ? {
      internet-https = {
        port        = 443
        description = "HTTPS to the internet through NAT"
        cidr_ipv4   = "0.0.0.0/0"
      }
    } : {},
  )

  database_egress = {
    database = {
      port              = 5432
      description       = "PostgreSQL"
      security_group_id = module.database.security_group_id
    }
  }
}
