# AWS side of the nomad-driver-ecs demo: a small public VPC, an ECS cluster, one Fargate task
# definition running a tiny web server, and the IAM pieces (the task execution role, and the
# policy the Nomad clients need to drive ECS through the plugin).
#
# Costs: the ECS task is billed per second while it runs (Fargate, 0.25 vCPU / 0.5 GiB), plus
# CloudWatch Logs and data transfer; the rest is free. `terraform destroy` removes everything.

terraform {
  required_version = ">= 1.3"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "nomad-driver-ecs-demo"
    }
  }
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  name_prefix = "nomad-ecs-demo"
  azs         = slice(data.aws_availability_zones.available.names, 0, 2)
  arn_prefix  = "arn:${data.aws_partition.current.partition}"
  account_id  = data.aws_caller_identity.current.account_id
}

# ---------------------------------------------------------------------------------------------
# Network: a VPC with two public subnets in two zones. Tasks get a public IP (the job sets
# assign_public_ip = "ENABLED"), so they can pull their image without a NAT gateway.

resource "aws_vpc" "demo" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = "${local.name_prefix}-vpc"
  }
}

resource "aws_internet_gateway" "demo" {
  vpc_id = aws_vpc.demo.id

  tags = {
    Name = "${local.name_prefix}-igw"
  }
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id                  = aws_vpc.demo.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = true

  tags = {
    Name = "${local.name_prefix}-public-${local.azs[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.demo.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.demo.id
  }

  tags = {
    Name = "${local.name_prefix}-public"
  }
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# The task's security group: HTTP in, anything out (image pulls, CloudWatch Logs).
resource "aws_security_group" "task" {
  name_prefix = "${local.name_prefix}-task-"
  description = "nomad-driver-ecs demo task: HTTP in, all out"
  vpc_id      = aws_vpc.demo.id

  tags = {
    Name = "${local.name_prefix}-task"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  security_group_id = aws_security_group.task.id
  description       = "HTTP to the demo web server"
  cidr_ipv4         = var.http_ingress_cidr
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.task.id
  description       = "Everything out"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

# ---------------------------------------------------------------------------------------------
# ECS: the cluster the plugin block names, and the task definition the job names.

resource "aws_ecs_cluster" "demo" {
  name = var.cluster_name
}

resource "aws_cloudwatch_log_group" "task" {
  name              = "/ecs/${var.task_family}"
  retention_in_days = var.log_retention_days
}

# The role ECS itself uses to start the task: pull the image, write the awslogs stream.
data "aws_iam_policy_document" "ecs_tasks_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task_execution" {
  name_prefix        = "${local.name_prefix}-exec-"
  description        = "ECS task execution role of the nomad-driver-ecs demo task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume_role.json
}

resource "aws_iam_role_policy_attachment" "task_execution" {
  role       = aws_iam_role.task_execution.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# The job's task definition. Its containers come from a JSON file (var.ecs_task_definition_file):
# files/base-demo.json is revision 1; applying again with
#   -var 'ecs_task_definition_file=./files/updated-demo.json'
# registers revision 2 (the update step of ../README.md). The files are container definitions
# JSON with two template variables, ${log_group} and ${region}, for the awslogs driver.
resource "aws_ecs_task_definition" "demo" {
  family                   = var.task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "256"
  memory                   = "512"
  execution_role_arn       = aws_iam_role.task_execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = templatefile(var.ecs_task_definition_file, {
    log_group = aws_cloudwatch_log_group.task.name
    region    = var.region
  })
}

# ---------------------------------------------------------------------------------------------
# What a Nomad client needs to run the plugin: exactly the five ECS calls it makes
# (RunTask, DescribeTasks, StopTask, DescribeClusters, DescribeTaskDefinition), tagging at RunTask, plus passing the
# task's role to ECS (iam:PassRole, only to ecs-tasks.amazonaws.com). Attach this policy to the identity the Nomad client agents
# run as (an instance profile role on EC2, or the user whose keys are in their environment).

data "aws_iam_policy_document" "nomad_client" {
  # Fingerprint: is the cluster there and ACTIVE?
  statement {
    sid       = "CheckTheCluster"
    actions   = ["ecs:DescribeClusters"]
    resources = [aws_ecs_cluster.demo.arn]
  }

  # StartTask: RunTask of this family (any revision), in this cluster only.
  statement {
    sid       = "RunDemoTasks"
    actions   = ["ecs:RunTask"]
    resources = ["${local.arn_prefix}:ecs:${var.region}:${local.account_id}:task-definition/${var.task_family}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.demo.arn]
    }
  }

  # RunTask tags every task with its Nomad identity; tagging is allowed only as part of RunTask.
  statement {
    sid       = "TagTasksAtLaunch"
    actions   = ["ecs:TagResource"]
    resources = ["${local.arn_prefix}:ecs:${var.region}:${local.account_id}:task/${var.cluster_name}/*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  # Watching (the status poller) and StopTask, for tasks of this cluster.
  statement {
    sid       = "WatchAndStopDemoTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["${local.arn_prefix}:ecs:${var.region}:${local.account_id}:task/${var.cluster_name}/*"]
  }

  # Which containers are essential (decides the exit code). This action has no resource-level
  # permissions in IAM, so it cannot be narrowed further.
  statement {
    sid       = "ReadTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  # RunTask hands the task definition's roles to ECS.
  statement {
    sid       = "PassTheTaskRolesToEcs"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task_execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "nomad_client" {
  name_prefix = "${local.name_prefix}-nomad-client-"
  description = "What the nomad-driver-ecs plugin on a Nomad client needs for the demo cluster"
  policy      = data.aws_iam_policy_document.nomad_client.json
}

# Optional: a user with nothing but that policy, whose access key the Nomad clients can use
# (the plugin reads static keys from its environment or from the shared AWS files).
resource "aws_iam_user" "nomad_client" {
  count = var.create_nomad_client_user ? 1 : 0

  name = "${local.name_prefix}-nomad-client"
}

resource "aws_iam_user_policy_attachment" "nomad_client" {
  count = var.create_nomad_client_user ? 1 : 0

  user       = aws_iam_user.nomad_client[0].name
  policy_arn = aws_iam_policy.nomad_client.arn
}

resource "aws_iam_access_key" "nomad_client" {
  count = var.create_nomad_client_user ? 1 : 0

  user = aws_iam_user.nomad_client[0].name
}
