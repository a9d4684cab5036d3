output "state_bucket" {
  description = "Pass to `terraform init -backend-config=\"bucket=...\"` in each environment."
  value       = aws_s3_bucket.state.id
}

output "state_kms_key_arn" {
  description = "KMS key of the state bucket."
  value       = aws_kms_key.state.arn
}
