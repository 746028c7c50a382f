# The demo job: one task, "http-server", run by the ecs driver as a Fargate task in the cluster
# named in the client's plugin block.
#
# The three values in <angle brackets> are placeholders for the ids Terraform creates: replace
# them with `terraform output subnet_ids` and `security_group_id` from ../terraform
# (../README.md, step 5, does it with one sed command). If one is left in, Nomad still accepts
# the job, but ECS rejects the RunTask and the allocation fails with ECS's error message.
#
# task_definition names revision 1 of the family Terraform registers from
# ../terraform/files/base-demo.json; the update step bumps it to ":2".

job "ecs-demo" {
  datacenters = ["dc1"]
  type        = "service"

  group "remote" {
    count = 1

    # An ECS task that stops is not restarted in place: the allocation fails and Nomad
    # reschedules it (a new allocation, a new ECS task), possibly on another client.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      delay          = "10s"
      delay_function = "constant"
      unlimited      = true
    }

    task "http-server" {
      driver = "ecs"

      # How long StopTask may wait for ECS to report the task STOPPED (capped by the
      # client's max_kill_timeout).
      kill_timeout = "90s"

      config {
        task {
          launch_type     = "FARGATE"
          task_definition = "nomad-remote-driver-demo:1"

          network_configuration {
            aws_vpc_configuration {
              assign_public_ip = "ENABLED"
              security_groups  = ["<security_group_id>"]
              subnets          = ["<subnet_id_1>", "<subnet_id_2>"]
            }
          }
        }
      }

      # The work happens in ECS; this is only what Nomad reserves on the client for the
      # plugin's bookkeeping.
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
