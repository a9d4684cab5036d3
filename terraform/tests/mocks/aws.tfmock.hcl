# Values the mocked AWS provider returns where a random string would not do (terraform test,
# run by scripts/check-infra): well-formed JSON policies, real-looking zones, ARNs and ids.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:user/terraform"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_region" {
  defaults = {
    name = "eu-west-1"
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    names    = ["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"]
    zone_ids = ["euw1-az1", "euw1-az2", "euw1-az3", "euw1-az4"]
  }
}

mock_data "aws_elb_service_account" {
  defaults = {
    arn = "arn:aws:iam::156460612806:root"
  }
}

mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

mock_resource "aws_db_instance" {
  defaults = {
    arn     = "arn:aws:rds:eu-west-1:123456789012:db:mock-db"
    address = "mock-db.abcdefghijkl.eu-west-1.rds.amazonaws.com"
    port    = 5432
    master_user_secret = [{
      secret_arn    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mock-AbCdEf"
      kms_key_id    = "arn:aws:kms:eu-west-1:123456789012:key/mock"
      secret_status = "active"
    }]
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    key_id = "00000000-0000-0000-0000-000000000000"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/mock"
  }
}

mock_resource "aws_iam_openid_connect_provider" {
  defaults = {
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-1:123456789012:mock-alerts"
    id  = "arn:aws:sns:eu-west-1:123456789012:mock-alerts"
  }
}

mock_resource "aws_sqs_queue" {
  defaults = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:mock.fifo"
    id  = "https://sqs.eu-west-1.amazonaws.com/123456789012/mock.fifo"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/mock.fifo"
  }
}

mock_resource "aws_secretsmanager_secret" {
  defaults = {
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mock-AbCdEf"
    id  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mock-AbCdEf"
  }
}

mock_resource "aws_service_discovery_http_namespace" {
  defaults = {
    arn = "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-mock"
  }
}

mock_resource "aws_ecs_cluster" {
  defaults = {
    arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/mock"
  }
}

mock_resource "aws_ecs_task_definition" {
  defaults = {
    arn                  = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mock:1"
    arn_without_revision = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mock"
    revision             = 1
  }
}

mock_resource "aws_ecs_service" {
  defaults = {
    arn = "arn:aws:ecs:eu-west-1:123456789012:service/mock/mock"
    id  = "arn:aws:ecs:eu-west-1:123456789012:service/mock/mock"
  }
}

mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:eu-west-1:123456789012:repository/mock"
    repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mock"
    registry_id    = "123456789012"
  }
}

mock_resource "aws_lb" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mock/0123456789abcdef"
    arn_suffix = "app/mock/0123456789abcdef"
    dns_name   = "internal-mock-123456789.eu-west-1.elb.amazonaws.com"
    zone_id    = "Z32O12XQLNTSW2"
  }
}

mock_resource "aws_lb_target_group" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mock/0123456789abcdef"
    arn_suffix = "targetgroup/mock/0123456789abcdef"
  }
}

mock_resource "aws_lb_listener" {
  defaults = {
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/0123456789abcdef/0123456789abcdef"
  }
}

mock_resource "aws_s3_bucket" {
  defaults = {
    arn = "arn:aws:s3:::mock-bucket"
  }
}

mock_resource "aws_cloudwatch_metric_alarm" {
  defaults = {
    arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mock"
  }
}

mock_resource "aws_appautoscaling_policy" {
  defaults = {
    arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:00000000-0000-0000-0000-000000000000:resource/ecs/service/mock/mock:policyName/mock"
  }
}

mock_resource "aws_cloudwatch_event_rule" {
  defaults = {
    arn = "arn:aws:events:eu-west-1:123456789012:rule/mock"
  }
}

mock_resource "aws_codedeploy_app" {
  defaults = {
    arn = "arn:aws:codedeploy:eu-west-1:123456789012:application:mock"
  }
}

mock_resource "aws_codedeploy_deployment_group" {
  defaults = {
    arn = "arn:aws:codedeploy:eu-west-1:123456789012:deploymentgroup:mock/mock"
  }
}

mock_resource "aws_wafv2_web_acl" {
  defaults = {
    arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/mock/00000000-0000-0000-0000-000000000000"
  }
}

mock_resource "aws_wafv2_ip_set" {
  defaults = {
    arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/ipset/mock/00000000-0000-0000-0000-000000000000"
  }
}

mock_resource "aws_db_instance_automated_backups_replication" {
  defaults = {
    arn = "arn:aws:rds:eu-central-1:123456789012:auto-backup:ab-mock"
    id  = "arn:aws:rds:eu-central-1:123456789012:auto-backup:ab-mock"
  }
}

# a NAT gateway's address becomes a /32 the ALB admits (an internet-facing ALB): a real one
mock_resource "aws_eip" {
  defaults = {
    public_ip = "203.0.113.10"
  }
}
