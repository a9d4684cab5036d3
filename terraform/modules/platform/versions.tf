terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
      # aws.dr: the disaster-recovery region (used only when var.dr_region is set)
      configuration_aliases = [aws.dr]
    }
  }
}
