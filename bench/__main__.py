"""Run every benchmark module in bench/ and print one table (``make bench``)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

import bench
from bench import Row, format_rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("only", nargs="*", help="benchmark modules to run (default: all)")
    args = parser.parse_args()
    names = args.only or sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    rows: list[Row] = []
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"# running bench.{name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(module.main(quick=args.quick))
        except Exception:
            traceback.print_exc()
            failed.append(name)
    print(format_rows(rows))
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
