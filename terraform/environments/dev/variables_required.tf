variable "certificate_arn" {
  description = "ACM certificate for the API's host name, in var.region."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository (`owner/name`) allowed to deploy this environment."
  type        = string
}
