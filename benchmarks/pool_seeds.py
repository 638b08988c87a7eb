"""Pools the seeds of several results tables of one config into one mean ± std.

    python benchmarks/pool_seeds.py results/default-96px results/default-96px-s34 --out results/default-96px-5seeds.md

Every table directory that `results_table.py` writes keeps, per seed, the run's report.json and config.json.
This reads them all, refuses to pool runs whose configs differ in anything but the seed (or that share a seed;
an option added after a run was made counts at its default), and prints each method's test accuracy over every
seed, and the fine-tuned SSL minus baseline gap.
"""

import argparse
import glob
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_table  # noqa: E402
from results_table import METHODS, mean_std, row  # noqa: E402

from ssl_keras import config as config_lib  # noqa: E402


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table_dirs", nargs="+", help="directories written by results_table.py")
    p.add_argument("--out", required=True, help="the markdown file to write")
    args = p.parse_args(argv)
    reports = read_seeds(args.table_dirs)
    seeds = [r["seed"] for r in reports]
    lines = [f"Seeds {seeds} of {', '.join(args.table_dirs)}, one config.", "",
             "| method | test accuracy (mean ± std) | per seed |", "|---|---|---|"]
    for label, key in METHODS:
        vals = [r[key]["test_accuracy"] for r in reports if r[key].get("test_accuracy") is not None]
        if len(vals) == len(reports):
            lines.append(row(label, vals))
    gaps = [100 * (r["ssl"]["test_accuracy"] - r["baseline"]["test_accuracy"]) for r in reports]
    mean, std = mean_std(gaps)
    lines += ["", f"Fine-tuned SSL minus baseline: {mean:+.1f} ± {std:.1f} points "
              f"({', '.join(f'{g:+.1f}' for g in gaps)}).", "",
              f"Command: `python benchmarks/pool_seeds.py {shlex.join(sys.argv[1:] if argv is None else argv)}`"]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
