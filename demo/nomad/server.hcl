# The demo's Nomad server: a single server that elects itself leader.
# Start it with:  nomad agent -config=server.hcl
# It listens on Nomad's default ports (HTTP 4646, RPC 4647, Serf 4648) on this machine.

name       = "demo-server"
datacenter = "dc1"
data_dir   = "/tmp/nomad-ecs-demo/server"
log_level  = "INFO"

server {
  enabled          = true
  bootstrap_expect = 1
}
