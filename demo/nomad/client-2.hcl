# The second Nomad client, on the same machine as client-1.hcl (for the drain and lost-node
# steps). Start it with:  nomad agent -config=client-2.hcl
# It differs from client-1.hcl only in its name, its state directory and its ports.
#
# The Nomad agent passes its environment to the plugin: start it where AWS credentials are set
# (see ../README.md, step 3).

name       = "demo-client-2"
datacenter = "dc1"
data_dir   = "/tmp/nomad-ecs-demo/client-2"
log_level  = "INFO"

# Where `nomad-driver-ecs` (target/release/nomad-driver-ecs) is copied.
plugin_dir = "/tmp/nomad-ecs-demo/plugins"

# Neither the server's nor client-1's ports: all three agents run on one machine.
ports {
  http = 6646
  rpc  = 6647
  serf = 6648
}

client {
  enabled = true
  servers = ["127.0.0.1:4647"]

  # Stopping a Fargate task takes ECS tens of seconds; the job's kill_timeout asks for 90 s and
  # the client caps every task's kill_timeout at this value (default 30 s).
  max_kill_timeout = "3m"
}

# The block is matched to the binary by its file name, nomad-driver-ecs.
plugin "nomad-driver-ecs" {
  config {
    enabled = true
    cluster = "nomad-remote-driver-demo"
    region  = "us-east-1"
    # This Nomad cluster's name on its ECS tasks: sweep and adoption leave other clusters' tasks alone.
    nomad_cluster = "demo"
  }
}
