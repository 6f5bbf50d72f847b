"""Print the id of the newest finished training run of a method on a dataset (or mixture) and seed,
e.g. for ``--set unitalker.finetune_head=$(python scripts/find-run.py ...)`` in the Makefile.

    python scripts/find-run.py --dataset synthtalk+synthtalk-blendshape --method unitalker --seed 0
"""

from __future__ import annotations

import argparse
import sys

from talkbench.contract import Kind, Tag, column
from talkbench.tracking import Tracker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="the experiment: a dataset or a mixture a+b")
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = Tracker(create=False).search_runs(args.dataset)
    if not runs.empty:
        runs = runs[
            (runs[column(Tag.METHOD)] == args.method)
            & (runs[column(Tag.SEED)].astype(str) == str(args.seed))
            & (runs.get(column(Tag.KIND), "") != Kind.SWEEP)
        ]
    if runs.empty:
        print(f"no finished {args.method} run of seed {args.seed} on {args.dataset}", file=sys.stderr)
        return 1
    print(runs.sort_values("start_time").iloc[-1]["run_id"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
