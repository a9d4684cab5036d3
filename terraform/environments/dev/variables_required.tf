variable "certificate_arn" {
  description = "ACM certificate for the API's host name, in var.region."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository (`owner/name`) allowed to deploy this environment."
  type        = string
}

variable "api_host_name" {
  description = "The API's host name, covered by certificate_arn; point it at alb_dns_name after the first apply."
  type        = string
}
