# shellcheck shell=bash
# Installs what the local demo and the test suite need on a fresh Debian machine, if missing:
#   - apt: cmake and a C++ compiler (grpcio builds gRPC's C core), python3 with venv/ensurepip;
#   - <repo>/.venv: a Python venv with the ECS emulator's pinned packages (moto, flask, flask-cors)
#     and python-hcl2 (tests/demo_files.rs parses the demo's .tf/.hcl/.nomad files with it).
# Idempotent. Source it and call `ensure_deps <repo root>`; it exports ECS_EMULATOR_PYTHON.
# (Running it directly does the same for the repository it lives in.)

ensure_deps() {
  local root=$1
  local need_apt=()
  command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
  command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    return 1
  fi

  # The ECS emulator (moto; see tests/support/ecs_emulator.py) and the HCL parser of
  # tests/demo_files.rs, pinned, in a project-local venv. An existing venv that lacks one of
  # them (e.g. made before python-hcl2 was added) gets the whole pinned set installed again.
  local venv="$root/.venv"
  if ! "$venv/bin/python" -c 'import moto, flask, flask_cors; from hcl2 import load' >/dev/null 2>&1; then
    echo "setting up $venv with the ECS emulator's Python packages and python-hcl2" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
      'moto==5.2.1' 'flask==3.1.3' 'flask-cors==6.0.2' 'python-hcl2==8.1.4'
  fi
  export ECS_EMULATOR_PYTHON="$venv/bin/python"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_deps "$(cd "$(dirname "$0")/../.." && pwd)"
fi
