"""``hoopt-report <sweep or run dirs> [--out DIR] [--target-loss X]``: aggregates runs, grouped by everything
but the seed, into PNG figures (training loss and validation accuracy against epoch and wall-clock time, mean
and min-max band over seeds, log-scale loss) and a Markdown + CSV table. Diverged runs are drawn (dashed, with
an x where they stopped) and counted, never dropped."""

from __future__ import annotations

import argparse
import os
import sys

from ..reports.report import LOSS, plot_metric, summarise, write_tables
from ..reports.runs import find_run_dirs, group_runs, load_run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-report", description=__doc__)
    parser.add_argument("paths", nargs="+", help="sweep dirs, run dirs, or folders holding them")
    parser.add_argument("--out", help="where figures and tables go (default: <first path>/report)")
    parser.add_argument("--target-loss", type=float, help="training loss whose first crossing is timed")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    missing = [p for p in args.paths if not os.path.isdir(p)]
    if missing:
        print(f"hoopt-report: error: {missing[0]} is not a folder; give sweep or run directories.", file=sys.stderr)
        sys.exit(2)
    run_dirs = find_run_dirs(args.paths)
    if not run_dirs:
        print(f"hoopt-report: error: no runs (folders with .hydra/ and metrics.jsonl) under {', '.join(args.paths)};"
              f" point it at hoopt-train output folders.", file=sys.stderr)
        sys.exit(2)
    out = args.out or os.path.join(args.paths[0], "report")
    os.makedirs(out, exist_ok=True)
    groups = group_runs([load_run(p) for p in run_dirs])
    rows = [summarise(label, runs, args.target_loss) for label, runs in groups.items()]
    write_tables(rows, out)
    any_run = next(iter(groups.values()))[0]
    second = "val/acc" if any_run.series("val/acc")[2] else "eval/gap"
    for tag, log_y in ((LOSS, True), (second, second == "eval/gap")):
        for x_axis in ("epoch", "wall"):
            name = f"{tag.replace('/', '_')}_vs_{x_axis}.png"
            plot_metric(groups, tag, x_axis, os.path.join(out, name), log_y)
    print(f"hoopt-report: {len(run_dirs)} runs in {len(groups)} groups; figures and summary.md/summary.csv in {out}")
    with open(os.path.join(out, "summary.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
