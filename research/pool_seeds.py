"""Pools the seeds of several results tables of one config into one mean ± std.

    python research/pool_seeds.py results/quick results/quick-s345 --out /tmp/quick-6seeds.md

Answers: with more seeds than one table holds, what is each classifier's mean and spread? Every
`benchmarks/results_table.py` directory keeps, per seed, the run's report.json and config.json. This reads
them all, refuses to pool runs whose configs differ in anything but the seed (an option added after a run was
made counts at its default) or that share a seed, and prints each classifier's test accuracy and gap to the
baseline over every seed.
"""

import argparse
import glob
import json
import os
import shlex
import statistics
import sys

from ssl_keras import config as config_lib


def read_seeds(table_dirs) -> list[dict]:
    """The report.json of every seed under `table_dirs`, sorted by seed; SystemExit when they do not pool."""
    reports, config, where = {}, None, None
    for table_dir in table_dirs:
        paths = sorted(glob.glob(os.path.join(table_dir, "seed*", "report.json")))
        if not paths:
            raise SystemExit(f"No seed*/report.json under {table_dir!r}: is it a results_table.py directory?")
        for path in paths:
            with open(path) as f:
                report = json.load(f)
            with open(os.path.join(os.path.dirname(path), "config.json")) as f:
                # Resolved, so that a run made before an option existed reads as its default.
                cfg = _flat(config_lib.to_dict(config_lib.from_dict(json.load(f))))
            del cfg["seed"]
            if config is None:
                config, where = cfg, path
            elif cfg != config:
                diff = sorted(k for k in cfg.keys() | config.keys() if cfg.get(k) != config.get(k))
                raise SystemExit(f"{path} was run with another config than {where} (differs in {diff}); "
                                 "only seeds of one config pool.")
            if report["seed"] in reports:
                raise SystemExit(f"Seed {report['seed']} appears twice ({path}); pool each seed once.")
            reports[report["seed"]] = report
    return [reports[s] for s in sorted(reports)]


def _flat(d: dict, prefix: str = "") -> dict:
    """{"data": {"image_size": 96}} -> {"data.image_size": 96}."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _cell(values) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table_dirs", nargs="+", help="directories written by benchmarks/results_table.py")
    p.add_argument("--out", required=True, help="the markdown file to write")
    args = p.parse_args(argv)
    reports = read_seeds(args.table_dirs)
    seeds = [r["seed"] for r in reports]
    keys = [k for k, v in reports[0].items() if isinstance(v, dict) and "test_accuracy" in v and k != "best"
            and all(r.get(k, {}).get("test_accuracy") is not None for r in reports)]
    lines = [f"Seeds {seeds} of {', '.join(args.table_dirs)}, one config.", "",
             "| classifier | test accuracy % (mean ± std) | minus baseline, points | per seed |", "|---|---|---|---|"]
    for key in keys:
        acc = [100 * r[key]["test_accuracy"] for r in reports]
        gap = [a - 100 * r["baseline"]["test_accuracy"] for a, r in zip(acc, reports)]
        label = reports[0][key].get("label", key)
        lines.append(f"| {label} | {_cell(acc)} | {'-' if key == 'baseline' else _cell(gap)} | "
                     f"{', '.join(f'{a:.1f}' for a in acc)} |")
    lines += ["", f"Command: `python research/pool_seeds.py {shlex.join(sys.argv[1:] if argv is None else argv)}`"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
