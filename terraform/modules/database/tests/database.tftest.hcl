# Destroying the database (mocked plans): lifting deletion protection, which RDS needs before it
# deletes anything, keeps the final snapshot.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix               = "order-ledger-prod"
  vpc_id                    = "vpc-0123456789abcdef0"
  subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  kms_key_arn               = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  client_security_group_ids = { order-grpc = "sg-0123456789abcdef0" }
}

run "protected" {
  command = plan

  assert {
    condition     = aws_db_instance.this.deletion_protection && !aws_db_instance.this.skip_final_snapshot && aws_db_instance.this.final_snapshot_identifier == "order-ledger-prod-db-final"
    error_message = "a protected database would be deleted without a final snapshot"
  }
}

run "protection_lifted_for_a_destroy" {
  command = plan

  variables {
    deletion_protection = false
  }

  assert {
    condition     = !aws_db_instance.this.deletion_protection && !aws_db_instance.this.skip_final_snapshot && aws_db_instance.this.final_snapshot_identifier == "order-ledger-prod-db-final"
    error_message = "lifting deletion protection gives up the final snapshot"
  }
}

run "no_final_snapshot_when_asked" {
  command = plan

  variables {
    deletion_protection = false
    final_snapshot      = false
  }

  assert {
    condition     = aws_db_instance.this.skip_final_snapshot && aws_db_instance.this.final_snapshot_identifier == null
    error_message = "final_snapshot = false still takes one"
  }
}
