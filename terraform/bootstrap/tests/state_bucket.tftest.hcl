# A mocked plan (not apply: the state bucket has prevent_destroy, so a mocked apply could not be
# torn down).

mock_provider "aws" {
  source = "../tests/mocks"
}

run "plan" {
  command = plan

  assert {
    condition     = aws_s3_bucket.state.bucket == "order-ledger-tfstate-123456789012"
    error_message = "the state bucket is not <project>-tfstate-<account id>"
  }

  assert {
    condition     = one(aws_s3_bucket_versioning.state.versioning_configuration).status == "Enabled"
    error_message = "the state bucket is not versioned"
  }

  assert {
    condition     = alltrue([for k, v in aws_s3_bucket_public_access_block.state : v == true if startswith(k, "block_") || startswith(k, "ignore_") || startswith(k, "restrict_")])
    error_message = "the state bucket is not closed to the public"
  }
}

# A second bootstrap in the DR region, for a standby's state, beside the first one.
run "standby_in_the_dr_region" {
  command = plan

  variables {
    region  = "eu-central-1"
    standby = true
  }

  assert {
    condition     = aws_s3_bucket.state.bucket == "order-ledger-tfstate-eu-central-1-123456789012"
    error_message = "the standby's state bucket does not carry its region: it collides with the first bootstrap's"
  }
}
