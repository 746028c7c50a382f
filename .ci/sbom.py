#!/usr/bin/env python3
"""A CycloneDX 1.5 SBOM (JSON) of the plugin binary for one target, from `cargo metadata`.

Components are the crates compiled into the binary: the packages reachable from
nomad-driver-ecs through normal (not build, not dev) dependencies on that target, proc-macro
crates left out (they run in the compiler, not in the binary). Each has its version, SPDX
licence expression, purl and the SHA-256 Cargo.lock pins. The C and C++ the -sys crates compile
in (gRPC core from grpcio-sys, zlib from libz-sys) are named as properties of their crate.

Deterministic: no random serial number or clock; the serial number derives from the binary's
hash and the timestamp from SOURCE_DATE_EPOCH, so a reproducible build gives the same SBOM.

Usage: .ci/sbom.py --target TRIPLE [--binary PATH] > nomad-driver-ecs.cdx.json
"""

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import uuid

ROOT = "nomad-driver-ecs"
# What the -sys crates build from bundled sources (their own versions are in their metadata).
BUNDLED = {
    "grpcio-sys": "gRPC C core (bundled source, built with cmake)",
    "libz-sys": "zlib (bundled source, static)",
}


def metadata(target, cargo_config=None):
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target]
    if cargo_config:
        # A vendored tree (air-gapped build): no registry, the sources from the vendor directory.
        cmd += ["--offline", "--config", cargo_config]
    out = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def compiled_packages(target, cargo_config=None):
    """(name, version) of every package compiled into the binary for `target`, as cargo's
    feature resolver decides it (normal edges, proc-macros and their dependencies left out)."""
    cmd = ["cargo", "tree", "--locked", "-e", "normal,no-proc-macro", "--target", target, "--prefix", "none", "-f", "{p}"]
    if cargo_config:
        cmd += ["--offline", "--config", cargo_config]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            found.add((parts[0], parts[1][1:]))
    if not found:
        raise SystemExit("sbom: `cargo tree` listed no package")
    return found


def lock_checksums(path):
    sums, name, version = {}, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "[[package]]":
                name = version = None
            elif line.startswith('name = "'):
                name = line.split('"')[1]
            elif line.startswith('version = "'):
                version = line.split('"')[1]
            elif line.startswith("checksum = ") and name:
                sums[(name, version)] = line.split('"')[1]
    return sums


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--binary")
    ap.add_argument("--cargo-config", help="a cargo config file (the vendor directory's source replacement)")
    args = ap.parse_args()

    meta = metadata(args.target, args.cargo_config)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root_id = next(i for i, p in packages.items() if p["name"] == ROOT and p["source"] is None)

    def is_proc_macro(pkg):
        return any("proc-macro" in t["kind"] for t in pkg["targets"])

    # `cargo metadata` unifies features across build and normal dependencies (a build-only
    # crate's features can switch on an optional dependency there, e.g. env_filter's regex);
    # `cargo tree` resolves them as the build does, so only what it lists is kept.
    compiled = compiled_packages(args.target, args.cargo_config)

    def normal_deps(node_id):
        for d in nodes[node_id]["deps"]:
            pkg = packages[d["pkg"]]
            if (
                any(k["kind"] is None for k in d["dep_kinds"])
                and not is_proc_macro(pkg)
                and (pkg["name"], pkg["version"]) in compiled
            ):
                yield d["pkg"]

    seen, todo = set(), [root_id]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        todo.extend(normal_deps(i))

    sums = lock_checksums(os.path.join(meta["workspace_root"], "Cargo.lock"))

    def ref(pkg):
        return f"pkg:cargo/{pkg['name']}@{pkg['version']}"

    def component(pkg, kind):
        c = {"type": kind, "bom-ref": ref(pkg), "name": pkg["name"], "version": pkg["version"], "purl": ref(pkg)}
        if pkg.get("license"):
            c["licenses"] = [{"expression": pkg["license"]}]
        checksum = sums.get((pkg["name"], pkg["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        if pkg["name"] in BUNDLED:
            c["properties"] = [{"name": "nomad-driver-ecs:bundled", "value": BUNDLED[pkg["name"]]}]
        return c

    root = packages[root_id]
    app = component(root, "application")
    binary_hash = None
    if args.binary:
        with open(args.binary, "rb") as f:
            binary_hash = hashlib.sha256(f.read()).hexdigest()
        app["hashes"] = [{"alg": "SHA-256", "content": binary_hash}]
    app["properties"] = [{"name": "nomad-driver-ecs:target", "value": args.target}]

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    seed = f"{ref(root)} {args.target} {binary_hash or ''}"
    deps = []
    for i in sorted(seen, key=lambda i: ref(packages[i])):
        deps.append({"ref": ref(packages[i]), "dependsOn": sorted({ref(packages[d]) for d in normal_deps(i)})})
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {"components": [{"type": "application", "name": ".ci/sbom.py", "version": root["version"]}]},
            "component": app,
        },
        "components": [component(packages[i], "library") for i in sorted(seen - {root_id}, key=lambda i: ref(packages[i]))],
        "dependencies": deps,
    }
    json.dump(bom, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
