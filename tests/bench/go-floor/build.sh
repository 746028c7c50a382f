#!/usr/bin/env bash
# Builds the Go plugin floor (main.go, service.go): a minimal go-plugin gRPC plugin, from Debian's
# packages, offline, in GOPATH mode, stripped. tests/bench/floor.rs compares the Rust plugin to it.
#
# Usage: tests/bench/go-floor/build.sh [OUTPUT]   (default: target/go-floor/go-floor-plugin)
#
# Installs golang-go and golang-github-hashicorp-go-plugin-dev if missing, and
# golang-google-grpc-dev: Debian 12's go-plugin-dev (1.0.1-4) does not depend on it although
# go-plugin imports google.golang.org/grpc. CGO is off (a static binary, as HashiCorp's release
# builds of plugins are); GO_FLOOR_CGO=1 builds with cgo (dynamically linked to glibc) instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

out=${1:-$root/target/go-floor/go-floor-plugin}
case $out in /*) ;; *) out=$PWD/$out ;; esac

packages=(golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
fi

gocode=/usr/share/gocode
[ -d "$gocode/src/github.com/hashicorp/go-plugin" ] || {
  echo "no go-plugin source under $gocode/src" >&2
  exit 1
}

mkdir -p "$(dirname "$out")"
cache=$root/target/go-floor/gocache
mkdir -p "$cache"

cgo=0
[ "${GO_FLOOR_CGO:-0}" = 1 ] && cgo=1

echo "go:        $(go version)"
echo "go-plugin: $(dpkg-query -W -f '${Version}' golang-github-hashicorp-go-plugin-dev) (golang-github-hashicorp-go-plugin-dev)"
echo "grpc-go:   $(dpkg-query -W -f '${Version}' golang-google-grpc-dev) (golang-google-grpc-dev)"
echo "protobuf:  $(dpkg-query -W -f '${Version}' golang-github-golang-protobuf-1-3-dev 2>/dev/null || echo '?') (golang-github-golang-protobuf-1-3-dev)"
echo "cgo:       $cgo"

cd "$here"
env -u GOFLAGS GO111MODULE=off GOPATH="$gocode" GOCACHE="$cache" GOPROXY=off CGO_ENABLED="$cgo" \
  go build -trimpath -ldflags "-s -w" -o "$out" .
echo "built:     $out ($(stat -c %s "$out") bytes)"
