# Overrides for a second client on the same machine; use it together with client.hcl:
#   nomad agent -config=client.hcl -config=client-2.hcl
# Later files win, so only the name, the state directory and the ports change.

name     = "demo-client-2"
data_dir = "/tmp/nomad-ecs-demo/client-2"

ports {
  http = 6646
  rpc  = 6647
  serf = 6648
}
