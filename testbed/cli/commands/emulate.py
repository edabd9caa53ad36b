"""``testbed emulate FILE --out DIR [--duration D] [--time-scale K] [--link shaper|tc] [--set path=value]``."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from testbed.cli.help import example
from testbed.cli.progress import add_quiet, enabled, ticking

__all__ = ["register"]


def _emulate(args: argparse.Namespace) -> int:
    from testbed.core.metrics import format_summary
    from testbed.emulate.run import check_options
    from testbed.io import claim_output, json_text
    from testbed.run.prepare import prepare

    check_options(args.time_scale, args.max_frame, args.drain_cap)

    overrides = list(args.set or [])
    if args.duration:
        overrides.append(f"duration={args.duration}")
    resolved, raw = prepare(args.file, overrides or None)
    with claim_output(args.out, args.force) if args.out else contextlib.nullcontext():  # locked until written
        result = _emulate_and_write(args, resolved, raw)
    if args.json:
        print(json_text({"summary": result.summary, "emulation": result.meta}))
    else:
        print(format_summary(result.summary))
        f, s = result.meta["fleet"], result.meta["server"]
        print(f"\nlink {result.meta['link']['mode']}, time scale {result.meta['time_scale']}; overruns: "
              f"head {f.get('head_overruns', 0)}, encode {f.get('encode_overruns', 0)}, "
              f"tail {s.get('tail_overruns', 0)}; late arrivals {f.get('late_arrivals', 0)}; "
              f"server errors {result.meta['server_errors']}")
        if args.out:
            print(f"wrote {args.out}/requests.parquet, summary.json, emulation.json, server_errors.csv, scenario.yaml")
    return 0


def _emulate_and_write(args: argparse.Namespace, resolved: Any, raw: dict[str, Any]) -> Any:
    from testbed.errors import TestbedError

    if args.link == "tc":
        from testbed.emulate.netns import tc_support

        ok, why = tc_support()
        if not ok:
            raise TestbedError(f"--link tc: {why}")
    from testbed.emulate import emulate_scenario, write_emulation

    duration = float(resolved.scenario.duration)
    # scenario seconds elapsed (the run then drains what is in flight, up to --drain-cap)
    with ticking(enabled(args), "emulate (scenario s)", total=duration, scale=1.0 / args.time_scale):
        result = emulate_scenario(resolved, time_scale=args.time_scale, link=args.link, max_frame=args.max_frame,
                                  drain_cap=args.drain_cap)
    if args.out:
        write_emulation(result, raw, args.out, force=True)
    return result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulate", help="run a scenario live: real server, sockets and a shaped link",
                       epilog=example("testbed emulate scenarios/emulate_10_nodes.yaml --duration '20 s' "
                                      "--out runs/e1"))
    p.add_argument("file", help="scenario YAML file")
    p.add_argument("--out", help="directory for requests.parquet, summary.json, emulation.json, scenario.yaml")
    p.add_argument("--duration", help="override the scenario duration, e.g. '20 s'")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="wall seconds per scenario second: times x K, data rates / K")
    p.add_argument("--link", choices=("shaper", "tc"), default="shaper",
                   help="shape the link in the application (default) or with tc in network namespaces (root)")
    p.add_argument("--max-frame", type=int, default=8 << 20, help="largest frame the server accepts (bytes)")
    p.add_argument("--drain-cap", type=float, default=30.0,
                   help="scenario seconds to wait for requests in flight after the arrivals stop")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a field (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_quiet(p)
    p.set_defaults(func=_emulate)
