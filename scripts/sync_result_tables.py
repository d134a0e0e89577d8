"""Rewrite the measured tables in the README, docs/ and the model cards from the results.json / results.md they come
from (evaluation/result_tables.py says how a table is marked). Run it after combining a sweep; --check writes nothing
and exits 1 naming the files that are out of date (the test suite runs the same check).

    python scripts/sync_result_tables.py
"""

import argparse
import sys
from pathlib import Path

from guided_diffusers.evaluation.result_tables import sync


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args()
    changed = sync(Path(__file__).resolve().parent.parent, check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'rewrote'}: {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
