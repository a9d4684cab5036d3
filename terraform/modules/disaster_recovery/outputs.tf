output "dr_region" {
  description = "Region holding the copies."
  value       = var.dr_region
}

output "backup_replication_arn" {
  description = "ARN of the replicated automated backups in the DR region (restore from it there)."
  value       = aws_db_instance_automated_backups_replication.this.id
}

output "dr_kms_key_arn" {
  description = "KMS key of the replicated backups in the DR region."
  value       = aws_kms_key.dr.arn
}
