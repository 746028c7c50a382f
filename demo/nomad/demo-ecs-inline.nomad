# The demo job with its task definition written inline: no Terraform-registered definition is
# needed. The plugin registers the JSON below itself (family "nomad-remote-driver-demo-inline",
# tagged with the hash of the definition) at the first start and reuses that revision for every
# other allocation of this job version; changing the image and re-running the job registers one
# new revision. See ../../README.md, "Task definitions in the job".
#
# Replace the three <angle bracket> placeholders as for demo-ecs.nomad (../README.md, step 5). The
# client's IAM policy needs ecs:RegisterTaskDefinition and ecs:ListTaskDefinitions (and iam:PassRole on
# any role the definition names, e.g. an executionRoleArn for awslogs) besides the usual ones.

job "ecs-demo-inline" {
  datacenters = ["dc1"]
  type        = "service"

  group "remote" {
    count = 2

    restart {
      attempts = 0
      mode     = "fail"
    }

    task "http-server" {
      driver       = "ecs"
      kill_timeout = "90s"

      config {
        task {
          launch_type          = "FARGATE"
          task_definition_json = <<JSON
{
  "family": "nomad-remote-driver-demo-inline",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {
      "name": "http-server",
      "image": "public.ecr.aws/nginx/nginx:stable",
      "essential": true,
      "memory": 512,
      "portMappings": [{"containerPort": 80, "name": "http"}]
    }
  ]
}
JSON

          network_configuration {
            aws_vpc_configuration {
              assign_public_ip = "ENABLED"
              security_groups  = ["<security_group_id>"]
              subnets          = ["<subnet_id_1>", "<subnet_id_2>"]
            }
          }
        }
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
