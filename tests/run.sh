#!/usr/bin/env bash
# Runs the whole test suite (unit + integration against the ECS emulator) on a fresh Debian
# machine: installs what is missing (cmake for gRPC's C core, a Python venv with moto), then
# `cargo test`. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The ECS emulator: moto in a project-local venv (pinned; see tests/support/ecs_emulator.py).
venv="$root/.venv"
if ! "$venv/bin/python" -c 'import moto, flask, flask_cors' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto==5.2.1' 'flask==3.1.3' 'flask-cors==6.0.2'
fi
export ECS_EMULATOR_PYTHON="$venv/bin/python"

exec cargo test --locked "$@"
