variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}

variable "migrate_image" {
  description = "order-grpc image (runs `order-grpc migrate`), `<repository url>:<tag>`."
  type        = string
}

variable "dbinit_image" {
  description = "order-dbinit image (runs bootstrap-roles.sh), `<repository url>:<tag>`."
  type        = string
}

variable "ecr_repository_arns" {
  description = "Repositories of the two images."
  type        = list(string)
}

variable "vpc_id" {
  description = "VPC of the task security group."
  type        = string
}

variable "db_address" {
  description = "Host name of the database."
  type        = string
}

variable "db_port" {
  description = "Port of the database."
  type        = number
}

variable "db_name" {
  description = "Name of the application database."
  type        = string
}

variable "master_secret_arn" {
  description = "RDS-managed master user secret (JSON username/password)."
  type        = string
}

variable "login_secret_arns" {
  description = "Login secrets by key: migrator, grpc, projector (JSON username/password/url)."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "KMS key of the secrets and of the log group."
  type        = string
}
