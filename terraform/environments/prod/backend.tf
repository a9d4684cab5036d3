# Remote state in S3 with S3-native locking (a .tflock object next to the state; Terraform
# >= 1.10), encrypted with the state bucket's KMS key
# (named here: `encrypt` alone would send SSE-S3, which overrides the bucket's default). The bucket comes from terraform/bootstrap;
# its name holds the account id, so it is given at init time:
#   terraform init -backend-config="bucket=order-ledger-tfstate-<account id>"
terraform {
  backend "s3" {
    key          = "order-ledger/prod/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    kms_key_id   = "alias/order-ledger-tfstate"
    use_lockfile = true
  }
}
