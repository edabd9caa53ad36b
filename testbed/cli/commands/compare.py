"""``testbed compare SIM_DIR EMU_DIR [--out DIR] [--json]``: simulated against emulated latencies."""

from __future__ import annotations

import argparse
from pathlib import Path

from testbed.cli.help import HelpFormatter, example

__all__ = ["register"]


def _compare(args: argparse.Namespace) -> int:
    from testbed.emulate.compare import write_comparison
    from testbed.io import json_text

    out = Path(args.out) if args.out else Path(args.emu_dir) / "compare"
    r = write_comparison(args.sim_dir, args.emu_dir, out, (args.label_a, args.label_b), force=args.force)
    if args.json:
        print(json_text(r))
        return 0
    a, b = args.label_a, args.label_b
    for name, side in ((a, "a"), (b, "b")):
        share = r[f"unfinished_share_{side}"]
        print(f"{name}: {r[f'completed_{side}']:,} of {r[f'created_{side}']:,} requests created in the window "
              f"completed; not completed (dropped, timed out or in flight) {share:.1%}")
    print("percentiles over completed requests:")
    print(f"{'':>5} {a:>11} {b:>11} {'diff':>9} {'rel':>7}")
    for name, p in r["percentiles"].items():
        print(f"{name:>5} {p['a_s'] * 1e3:>8.2f} ms {p['b_s'] * 1e3:>8.2f} ms {p['diff_s'] * 1e3:>+6.2f} ms "
              f"{p['rel'] * 100:>+6.1f}%")
    print(f"KS statistic {r['ks_statistic']:.3f} (p = {r['ks_pvalue']:.3g})")
    print(f"stage diverging most: {r['most_divergent_stage']} ({r['most_divergent_diff_s'] * 1e3:+.2f} ms mean)")
    print(f"wrote {out}/latency_cdf.png, latency_cdf.csv, comparison.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two runs (simulated vs emulated): CDFs, percentiles, KS, stages",
                       description="Compare two runs (usually `testbed run` and `testbed emulate` of one scenario): "
                                   "latency percentiles, completed and unfinished shares, KS statistic, stage "
                                   "means, and a CDF figure.",
                       epilog=example("testbed compare runs/sim10 runs/emu10 --out runs/cmp10"),
                       formatter_class=HelpFormatter)
    p.add_argument("sim_dir", help="--out folder of testbed run (the reference)")
    p.add_argument("emu_dir", help="--out folder of testbed emulate")
    p.add_argument("--out", help="folder for latency_cdf.png/.csv and comparison.json (default EMU_DIR/compare)")
    p.add_argument("--label-a", default="simulated")
    p.add_argument("--label-b", default="emulated")
    p.add_argument("--force", action="store_true", help="overwrite a comparison already in --out")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_compare)
