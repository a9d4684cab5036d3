provider "aws" {
  region = var.region

  # Every resource carries project / environment / service; modules override `service` on the
  # resources that belong to one service (order-grpc, order-projector, order-worker, migrate).
  default_tags {
    tags = {
      project     = var.project
      environment = "dev"
      service     = "platform"
      managed-by  = "terraform"
    }
  }
}

# The disaster-recovery region (replicated database backups, ECR image copies). Without
# var.dr_region nothing uses it; it then points at the primary region.
provider "aws" {
  alias  = "dr"
  region = coalesce(var.dr_region, var.region)

  default_tags {
    tags = {
      project     = var.project
      environment = "dev"
      service     = "disaster-recovery"
      managed-by  = "terraform"
    }
  }
}
