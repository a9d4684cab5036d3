output "address" {
  description = "Host name of the database."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the application database."
  value       = var.database_name
}

output "identifier" {
  description = "RDS instance identifier (CloudWatch dimension DBInstanceIdentifier)."
  value       = aws_db_instance.this.identifier
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}

output "master_secret_arn" {
  description = "Secrets Manager secret (JSON username/password) of the master user, managed by RDS."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "login_secret_arns" {
  description = "Secret ARN (JSON username/password/url) per login: migrator, grpc, projector."
  value       = { for k, s in aws_secretsmanager_secret.login : k => s.arn }
}

output "arn" {
  description = "ARN of the RDS instance."
  value       = aws_db_instance.this.arn
}

output "max_connections" {
  description = "max_connections of the parameter group (the connections alarm's reference)."
  value       = var.max_connections
}

output "replica_identifier" {
  description = "RDS instance identifier of the read replica (null without one): the ReplicaLag alarm's dimension."
  value       = var.read_replica ? aws_db_instance.replica[0].identifier : null
}

output "read_url_secret_key" {
  description = "JSON key of the grpc login secret holding the read replica's URL (null without a replica)."
  value       = var.read_replica ? "read_url" : null
}

output "credentials_version" {
  description = "The version of the login passwords (bump var.credentials_version to rotate them)."
  value       = var.credentials_version
}

output "account_wide_names" {
  description = "Names of this module's resources that are unique per account or worldwide (IAM roles, S3 buckets)."
  value       = [aws_iam_role.monitoring.name]
}
