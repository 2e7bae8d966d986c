"""``hoopt-report <sweep or run dirs> [--out DIR] [--target-loss X]``: every run under the given folders, grouped by
configuration with the seed set aside, into PNG figures (classification: training loss and validation accuracy
against epoch and wall-clock time; synthetic objectives: loss against step and wall-clock time; mean and min-max
band over the completed seeds) and a Markdown + CSV table. Every run is counted by status (completed, diverged,
failed, unfinished) and only completed runs enter the means; diverged runs are drawn dashed with an x where they
stopped, unfinished ones dotted.

``--best-by METRIC`` reads tuning sweeps instead (runner/reports/best.py): per study, the best trial by METRIC,
its overrides and the ``hoopt-train -m seed=...`` command that runs the final seeds, in best.yaml and best.md,
with plots of the search."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import HooptError
from ..reports.report import figures, summarise, write_tables
from ..reports.runs import STATUSES, find_run_dirs, group_runs, load_run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-report", description=__doc__)
    parser.add_argument("paths", nargs="+", help="sweep dirs, run dirs, or folders holding them")
    parser.add_argument("--out", help="where figures and tables go (default: <first path>/report)")
    parser.add_argument("--target-loss", type=float,
                        help="training loss whose first crossing is timed (adds the time-to-target columns)")
    parser.add_argument("--best-by", metavar="METRIC",
                        help="tuning sweeps: per study, the best trial by this logging tag (e.g. val/loss) and the "
                             "command that runs its final seeds, in best.yaml")
    parser.add_argument("--mode", choices=("min", "max"),
                        help="with --best-by: lower or higher is better (default: the study's tune.mode for its own "
                             "metric, max for accuracies, min otherwise)")
    parser.add_argument("--reduce", choices=("final", "best", "mean_last"),
                        help="with --best-by: the run's last value, its best, or its mean over the last fraction of "
                             "steps (default: the study's tune.reduce)")
    parser.add_argument("--fraction", type=float,
                        help="with --reduce mean_last: the fraction of steps (default: the study's tune.fraction)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.best_by is None and (args.mode or args.reduce or args.fraction is not None):
        print("hoopt-report: error: --mode, --reduce and --fraction go with --best-by METRIC; add it.", file=sys.stderr)
        sys.exit(2)
    missing = [p for p in args.paths if not os.path.isdir(p)]
    if missing:
        print(f"hoopt-report: error: {missing[0]} is not a folder; give sweep or run directories.", file=sys.stderr)
        sys.exit(2)
    run_dirs = find_run_dirs(args.paths)
    if not run_dirs:
        print(f"hoopt-report: error: no runs (folders with .hydra/config.yaml) under {', '.join(args.paths)};"
              f" point it at hoopt-train output folders.", file=sys.stderr)
        sys.exit(2)
    out = args.out or os.path.join(args.paths[0], "report")
    os.makedirs(out, exist_ok=True)
    if args.best_by is not None:
        best_report(args, out)
        return
    runs = [load_run(p) for p in run_dirs]
    groups = group_runs(runs)
    rows = [summarise(label, members, args.target_loss) for label, members in groups.items()]
    write_tables(rows, out, runs, root=os.path.commonpath([os.path.abspath(p) for p in args.paths]))
    figures(groups, out)
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in STATUSES)
    print(f"hoopt-report: {len(runs)} runs ({counts}) in {len(groups)} groups; figures and summary.md/summary.csv "
          f"in {out}")
    with open(os.path.join(out, "summary.md")) as f:
        print(f.read())


def best_report(args, out: str) -> None:
    from ..reports.best import best_by

    if not args.best_by.strip():
        print("hoopt-report: error: --best-by needs a logging tag, e.g. --best-by val/loss.", file=sys.stderr)
        sys.exit(2)
    try:
        record = best_by(args.paths, out, args.best_by, args.mode, args.reduce, args.fraction)
    except HooptError as error:
        print(f"hoopt-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    found = sum(entry["objective"] is not None for entry in record["studies"].values())
    print(f"hoopt-report: {len(record['studies'])} studies ({found} with a best trial); best.yaml, best.md and the "
          f"search figures in {out}")
    with open(os.path.join(out, "best.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
