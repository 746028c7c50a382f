#!/usr/bin/env bash
# Runs the whole test suite (unit + integration against the ECS emulator) on a fresh Debian
# machine: installs what is missing (cmake for gRPC's C core, a Python venv with moto; see
# demo/local/ensure-deps.sh), then `cargo test`. Idempotent; safe to run again. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# shellcheck source=demo/local/ensure-deps.sh
source "$root/demo/local/ensure-deps.sh"
ensure_deps "$root"
export ECS_EMULATOR_PYTHON

exec cargo test --locked --lib --bins --tests "$@"
