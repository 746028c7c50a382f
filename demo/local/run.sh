#!/usr/bin/env bash
# The local demo: no AWS account. Installs what is missing (see ensure-deps.sh), builds the
# plugin's release artifact (.ci/release), then tells the story of demo/README.md against the ECS emulator
# (moto on 127.0.0.1):
#   - without `nomad` on PATH: demo/local/main.rs (the example `local-demo`) plays the Nomad
#     client and drives the plugin binary step by step;
#   - with `nomad` on PATH: a `nomad agent -dev` runs demo/nomad/demo-ecs.nomad through the
#     plugin (set LOCAL_DEMO_NO_NOMAD=1 to get the first path anyway).
# Every process it starts is stopped when it ends, also on failure or Ctrl-C, so it can be run
# again right away.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

# shellcheck source=demo/local/ensure-deps.sh
source "$root/demo/local/ensure-deps.sh"
ensure_deps "$root"

# The binary users ship: the static musl release artifact (README "Release builds"), unless
# NOMAD_DRIVER_ECS_BIN names one already built (CI passes the one it has just tested).
if [ -z "${NOMAD_DRIVER_ECS_BIN:-}" ]; then
  echo "building the plugin: .ci/release x86_64-unknown-linux-musl" >&2
  "$root/.ci/release" x86_64-unknown-linux-musl
  NOMAD_DRIVER_ECS_BIN="$root/target/dist/x86_64-unknown-linux-musl/nomad-driver-ecs"
fi
[ -x "$NOMAD_DRIVER_ECS_BIN" ] || { echo "local demo: no plugin binary at $NOMAD_DRIVER_ECS_BIN" >&2; exit 1; }
export NOMAD_DRIVER_ECS_BIN
export ECS_EMULATOR_PYTHON

CLUSTER=nomad-remote-driver-demo
SUBNETS='["subnet-0cd4b2ec21331a144", "subnet-0da9019dcab8ae2f1"]'
SECURITY_GROUP=sg-05f444f6c0dda876d

# ---------------------------------------------------------------------------------------------
# With Nomad: a dev agent runs the real job file. NOT EXERCISED in this repository (CI has no
# Nomad binary); kept small on purpose. Uses only Nomad's HTTP API for status, through Python.
# Globals, not locals: the EXIT trap runs after the function has returned.
work="" emu_pid="" agent_pid=""
run_with_nomad() {
  local port endpoint
  work=$(mktemp -d "${TMPDIR:-/tmp}/nomad-ecs-local-demo.XXXXXX")
  cleanup_nomad() {
    # The agent runs in its own process group (with its plugin processes): SIGINT to the group,
    # then SIGKILL to whatever is left after 15 s.
    if [ -n "$agent_pid" ] && kill -INT -- "-$agent_pid" 2>/dev/null; then
      echo "stopping the Nomad agent (process group $agent_pid)" >&2
      local i
      for i in $(seq 30); do
        kill -0 -- "-$agent_pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -KILL -- "-$agent_pid" 2>/dev/null || true
      wait "$agent_pid" 2>/dev/null || true
    fi
    if [ -n "$emu_pid" ] && kill -TERM "$emu_pid" 2>/dev/null; then
      wait "$emu_pid" 2>/dev/null || true
    fi
    [ -n "$work" ] && rm -rf "$work"
  }
  trap cleanup_nomad EXIT
  trap 'exit 130' INT TERM

  # The emulator exits when its stdin closes; the coprocess keeps that pipe open for us.
  coproc EMU { exec "$ECS_EMULATOR_PYTHON" "$root/tests/support/ecs_emulator.py" --port 0; }
  emu_pid=$EMU_PID
  read -r _ port <&"${EMU[0]}"
  endpoint="http://127.0.0.1:$port"
  echo "ECS emulator on $endpoint"
  http() { # METHOD URL [JSON BODY] -> JSON on stdout
    "$ECS_EMULATOR_PYTHON" -c 'import sys, urllib.request as u
r = u.Request(sys.argv[2], method=sys.argv[1], data=sys.argv[3].encode() if len(sys.argv) > 3 else None,
              headers={"Content-Type": "application/json"})
print(u.urlopen(r, timeout=30).read().decode())' "$@"
  }
  json() { "$ECS_EMULATOR_PYTHON" -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
  http POST "$endpoint/_test/setup" "{\"region\": \"us-east-1\", \"cluster\": \"$CLUSTER\",
    \"task_definition_family\": \"nomad-remote-driver-demo\",
    \"containers\": [{\"name\": \"http-server\", \"essential\": true}],
    \"subnet_ids\": $SUBNETS, \"security_group_ids\": [\"$SECURITY_GROUP\"]}" | json 'd["task_definition_arn"]'

  mkdir "$work/plugins"
  cp "$NOMAD_DRIVER_ECS_BIN" "$work/plugins/nomad-driver-ecs"
  cat >"$work/plugin.hcl" <<EOF
plugin "nomad-driver-ecs" {
  config {
    enabled       = true
    cluster       = "$CLUSTER"
    region        = "us-east-1"
    endpoint      = "$endpoint"
    poll_interval = "1s"
  }
}
EOF
  sed -e "s|\"<security_group_id>\"|\"$SECURITY_GROUP\"|" \
      -e "s|\[\"<subnet_id_1>\", \"<subnet_id_2>\"\]|$SUBNETS|" \
      "$root/demo/nomad/demo-ecs.nomad" >"$work/demo-ecs.nomad"

  export NOMAD_ADDR=http://127.0.0.1:4646
  echo "starting: nomad agent -dev -plugin-dir $work/plugins -config $work/plugin.hcl (log: $work/agent.log)"
  set -m
  AWS_ACCESS_KEY_ID=AKIDLOCALDEMO AWS_SECRET_ACCESS_KEY=local-demo-not-a-secret \
    nomad agent -dev -plugin-dir "$work/plugins" -config "$work/plugin.hcl" >"$work/agent.log" 2>&1 &
  agent_pid=$!
  set +m

  wait_for() { # SECONDS DESCRIPTION COMMAND...
    local until=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
      if [ $SECONDS -ge $until ]; then
        echo "timed out waiting for $what" >&2
        tail -n 30 "$work/agent.log" >&2
        return 1
      fi
      sleep 1
    done
  }
  ecs_healthy() {
    http GET "$NOMAD_ADDR/v1/nodes" | json 'd[0]["ID"]' >"$work/node" &&
      http GET "$NOMAD_ADDR/v1/node/$(cat "$work/node")" | json 'd["Drivers"]["ecs"]["Healthy"] or sys.exit(1)'
  }
  alloc_running() {
    http GET "$NOMAD_ADDR/v1/job/ecs-demo/allocations" |
      json 'any(a["ClientStatus"] == "running" for a in d) or sys.exit(1)'
  }
  all_stopped() {
    http GET "$endpoint/_test/tasks?region=us-east-1&cluster=$CLUSTER" |
      json '(d and all(t["last_status"] == "STOPPED" for t in d)) or sys.exit(1)'
  }
  wait_for 60 "the Nomad node with a healthy ecs driver" ecs_healthy
  echo "nomad node status: driver.ecs healthy"
  nomad job run -detach "$work/demo-ecs.nomad"
  wait_for 60 "the allocation to run" alloc_running
  echo "allocation running; ECS tasks:"
  http GET "$endpoint/_test/tasks?region=us-east-1&cluster=$CLUSTER"
  nomad job stop ecs-demo
  wait_for 60 "the ECS task to stop" all_stopped
  echo "ECS tasks after nomad job stop:"
  http GET "$endpoint/_test/tasks?region=us-east-1&cluster=$CLUSTER"
  echo "local demo with Nomad finished OK"
}

if command -v nomad >/dev/null 2>&1 && [ -z "${LOCAL_DEMO_NO_NOMAD:-}" ]; then
  run_with_nomad
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Without Nomad: the example plays the Nomad client. It runs in its own process group (job
# control on), so that whatever it started (the emulator, the plugin processes) can be ended by
# that group's id if it dies or is interrupted, and so that leftovers are detected.
# The Nomad-side host is a dev build (it shares the test suite's build, and speed does not matter).
echo "building the demo host: cargo build --locked --example local-demo" >&2
cargo build --locked --example local-demo

set -m
"$root/target/debug/examples/local-demo" &
demo=$!
set +m
stop_demo() { kill -TERM -- "-$demo" 2>/dev/null || true; }
trap stop_demo EXIT
trap 'exit 130' INT TERM
rc=0
wait "$demo" || rc=$?
sleep 0.2
if kill -0 -- "-$demo" 2>/dev/null; then
  echo "processes of the demo were still running after it ended; stopping them:" >&2
  ps -eo pid=,pgid=,args= | awk -v g="$demo" '$2 == g' >&2 || true
  kill -KILL -- "-$demo" 2>/dev/null || true
  [ "$rc" -eq 0 ] && rc=1
else
  echo "no process of the demo is left running" >&2
fi
exit "$rc"
