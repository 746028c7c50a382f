# The demo job: one task, "http-server", run by the ecs driver as a Fargate task in the cluster
# named in the client's plugin block.
#
# The four values in <angle brackets> are placeholders: replace them with the outputs of
# `terraform output` in ../terraform (../README.md, step 4, does it with one sed command).
# If one is left in, Nomad still accepts the job, but ECS rejects the RunTask and the
# allocation fails with ECS's error message.

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
          launch_type = "FARGATE"
          # family:revision, e.g. "nomad-remote-driver-demo:1"
          task_definition = "<task_definition>"

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
