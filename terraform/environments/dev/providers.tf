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
