#!/usr/bin/env python3
"""Stubs the vendored crates that are never compiled for one target platform.

Usage: vendor-stub-unused.py VENDOR_DIR FULL_METADATA_JSON FILTERED_METADATA_JSON...

FULL_METADATA_JSON is `cargo metadata --format-version 1` over the vendored sources (every locked
package); each FILTERED_METADATA_JSON is the same with `--filter-platform <triple>`: the packages a
build for that triple can compile. A package kept by any of them stays (give the host's triple,
which runs the build scripts, and each target's). Every other vendored
package becomes a stub: its Cargo.toml stays (Cargo parses the manifest of every package in a
directory source), each target's root file (lib, bins, build script, ...) is an empty file so the
manifest still resolves its targets, everything else is deleted, and `.cargo-checksum.json`
becomes `{"files": {}, "package": "<unchanged package checksum>"}`, which keeps the Cargo.lock
checksum check and verifies no files. Writes VENDOR_DIR/STUBBED.txt (name version per line).
Standard library only.
"""

import json
import os
import shutil
import sys


def resolved_ids(metadata):
    return {node["id"] for node in metadata["resolve"]["nodes"]}


def stub(pkg_dir, target_roots):
    checksum_file = os.path.join(pkg_dir, ".cargo-checksum.json")
    with open(checksum_file, encoding="utf-8") as f:
        package_sum = json.load(f).get("package")
    if not package_sum:
        raise SystemExit(f"{checksum_file}: no package checksum (not a registry crate?)")
    for entry in os.listdir(pkg_dir):
        if entry == "Cargo.toml":
            continue
        path = os.path.join(pkg_dir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    for root in target_roots:
        os.makedirs(os.path.dirname(root), exist_ok=True)
        open(root, "w", encoding="utf-8").close()
    with open(checksum_file, "w", encoding="utf-8") as f:
        json.dump({"files": {}, "package": package_sum}, f)


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    vendor = os.path.realpath(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        full = json.load(f)
    needed = set()
    for path in sys.argv[3:]:
        with open(path, encoding="utf-8") as f:
            needed |= resolved_ids(json.load(f))
    stubbed = []
    for pkg in full["packages"]:
        if pkg["id"] in needed or pkg.get("source") is None:
            continue
        pkg_dir = os.path.realpath(os.path.dirname(pkg["manifest_path"]))
        if os.path.dirname(pkg_dir) != vendor:
            raise SystemExit(f"{pkg['name']} {pkg['version']}: {pkg_dir} is not in {vendor}")
        roots = [os.path.realpath(t["src_path"]) for t in pkg["targets"]]
        for r in roots:
            if not r.startswith(pkg_dir + os.sep):
                raise SystemExit(f"{pkg['name']}: target {r} is outside {pkg_dir}")
        stub(pkg_dir, roots)
        stubbed.append(f"{pkg['name']} {pkg['version']}")
    stubbed.sort()
    with open(os.path.join(vendor, "STUBBED.txt"), "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in stubbed))
    vendored = sum(1 for p in full["packages"] if p.get("source") is not None)
    print(f"stubbed {len(stubbed)} of {vendored} vendored packages (never compiled for this platform)")


if __name__ == "__main__":
    main()
