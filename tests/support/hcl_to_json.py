#!/usr/bin/env python3
"""Prints one HCL file (Terraform .tf, Nomad agent .hcl or job .nomad) as JSON, parsed by python-hcl2.

    python3 tests/support/hcl_to_json.py FILE

Used by tests/demo_files.rs. Output is python-hcl2 8.x's dict form without comments: blocks are lists of
objects marked ``"__is_block__": true``, labelled blocks nest one object per label, and string literals keep
their double quotes (``"\\"us-east-1\\""``) so that literals can be told from expressions (``var.region``).
Exit status 0 and the JSON on stdout; on a parse error, status 1 and ``FILE: error`` on stderr; status 2 if
python-hcl2 is missing.
"""

import json
import sys

try:
    import hcl2
    from hcl2 import SerializationOptions
except ImportError as e:  # pragma: no cover - environment problem
    print(f"python-hcl2 is not installed for {sys.executable}: {e} (run demo/local/ensure-deps.sh)", file=sys.stderr)
    sys.exit(2)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        with open(path, encoding="utf-8") as f:
            data = hcl2.load(f, serialization_options=SerializationOptions(with_comments=False))
    except Exception as e:  # noqa: BLE001 - any parser error is a failure of that file
        print(f"{path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(data, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
