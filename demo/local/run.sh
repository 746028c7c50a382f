#!/usr/bin/env bash
# The two-minute local demo: no AWS account, no Nomad. Installs what is missing (see
# ensure-deps.sh), builds the plugin in release mode, then runs demo/local/main.rs, which starts
# the ECS emulator (moto on 127.0.0.1) and drives the plugin binary the way a Nomad client does.
# Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

# shellcheck source=demo/local/ensure-deps.sh
source "$root/demo/local/ensure-deps.sh"
ensure_deps "$root"

echo "building the plugin: cargo build --release --locked" >&2
cargo build --release --locked

export NOMAD_DRIVER_ECS_BIN="$root/target/release/nomad-driver-ecs"
export ECS_EMULATOR_PYTHON
exec cargo run --release --locked --example local-demo
