mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  certificate_arn   = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  github_repository = "example/order-ledger"
}

run "plan" {
  command = plan
}

run "apply" {
  command = apply
}
