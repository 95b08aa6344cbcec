"""End-to-end accuracy benchmark on the default render set: render (Cycles) then evaluate.

    python bench/bench_accuracy.py [--scan DIR] [--out out/benchmark] [--fresh]

Renders and reconstructions already in OUT are reused (delete OUT or pass --fresh to redo
the reconstructions). Prints the Markdown table written to OUT/results.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.__main__ import main  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scan", default=None)
    parser.add_argument("--out", default="out/benchmark")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    common = ["--out", args.out] + (["--scan", args.scan] if args.scan else [])
    rc = main(["render", *common])
    if rc == 0:
        rc = main(["evaluate", *common] + (["--fresh"] if args.fresh else []))
    sys.exit(rc)
