# The zones of the network (mocked plans): named by letter, and a plan that names the ones an
# account lacks instead of failing on an index.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix = "order-ledger-prod"
  vpc_cidr    = "10.50.0.0/16"
  kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  az_count    = 3
}

run "zones_by_letter" {
  command = plan

  assert {
    condition     = local.wanted_azs == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    error_message = "the zones are not the region and the first az_count letters"
  }
}

# Tokyo: accounts opened since 2012 have 1a, 1c and 1d; DescribeAvailabilityZones answers the
# filter [1a, 1b, 1c] with 1a and 1c alone.
run "a_zone_the_account_lacks_fails_the_plan_by_name" {
  command = plan

  override_data {
    target = data.aws_region.current
    values = { name = "ap-northeast-1" }
  }
  override_data {
    target = data.aws_availability_zones.selected
    values = { names = ["ap-northeast-1a", "ap-northeast-1c"] }
  }

  expect_failures = [data.aws_availability_zones.selected]
}

run "other_letters_for_such_a_region" {
  command = plan

  variables {
    az_letters = ["a", "c", "d"]
  }

  override_data {
    target = data.aws_region.current
    values = { name = "ap-northeast-1" }
  }
  override_data {
    target = data.aws_availability_zones.selected
    values = { names = ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"] }
  }

  assert {
    condition     = local.azs == tolist(["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"])
    error_message = "az_letters does not choose the zones"
  }
}

run "a_letter_twice_is_refused" {
  command = plan

  variables {
    az_letters = ["a", "a", "c"]
  }

  expect_failures = [var.az_letters]
}

run "fewer_letters_than_zones_are_refused" {
  command = plan

  variables {
    az_letters = ["a", "c"]
  }

  expect_failures = [var.az_letters]
}
