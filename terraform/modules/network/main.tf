# VPC over `az_count` availability zones with three tiers of subnets:
#   public   - the load balancer (and the NAT gateways, when enabled); nothing gets a public IP
#   private  - the ECS tasks; reach AWS APIs through VPC endpoints, the internet only via NAT
#   isolated - the database; no route out of the VPC at all

# The zones are named explicitly (region + letter), so the subnet layout never shifts when AWS
# adds a zone; the plan fails, naming them, if one of them is not available to this account
# (Tokyo has no 1b for accounts opened since 2012, for instance: set `az_letters`).
locals {
  wanted_azs = [for letter in slice(var.az_letters, 0, var.az_count) : "${data.aws_region.current.name}${letter}"]
}

data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = local.wanted_azs
  }

  lifecycle {
    postcondition {
      condition     = length(setsubtract(local.wanted_azs, self.names)) == 0
      error_message = "availability zones ${join(", ", setsubtract(local.wanted_azs, self.names))} are not available to this account in ${data.aws_region.current.name} (missing, or not in state available; of those asked for it has ${length(self.names) == 0 ? "none" : join(", ", self.names)}): set az_letters to ${var.az_count} letters of zones it has (`aws ec2 describe-availability-zones --region ${data.aws_region.current.name}` lists them)"
    }
  }
}

locals {
  # The zones asked for, once the data source has found every one of them.
  azs = sort(setintersection(local.wanted_azs, data.aws_availability_zones.selected.names))
  # /16 -> sixteen /20s: 0-3 public, 4-7 private, 8-11 isolated
  public_cidrs   = [for i in range(var.az_count) : cidrsubnet(var.vpc_cidr, 4, i)]
  private_cidrs  = [for i in range(var.az_count) : cidrsubnet(var.vpc_cidr, 4, 4 + i)]
  isolated_cidrs = [for i in range(var.az_count) : cidrsubnet(var.vpc_cidr, 4, 8 + i)]
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(var.tags, { Name = "${var.name_prefix}-vpc" })
}

# Lock down the default security group: nothing may use it by accident.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name_prefix}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name_prefix}-igw" })
}

resource "aws_subnet" "public" {
  count = var.az_count

  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.public_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false

  tags = merge(var.tags, { Name = "${var.name_prefix}-public-${local.azs[count.index]}", tier = "public" })
}

resource "aws_subnet" "private" {
  count = var.az_count

  vpc_id            = aws_vpc.this.id
  cidr_block        = local.private_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = merge(var.tags, { Name = "${var.name_prefix}-private-${local.azs[count.index]}", tier = "private" })
}

resource "aws_subnet" "isolated" {
  count = var.az_count

  vpc_id            = aws_vpc.this.id
  cidr_block        = local.isolated_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = merge(var.tags, { Name = "${var.name_prefix}-isolated-${local.azs[count.index]}", tier = "isolated" })
}
