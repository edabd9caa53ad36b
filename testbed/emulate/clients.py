"""Run the emulated fleet (:class:`testbed.emulate.fleet.Fleet`) against a listening server, in
this process or, for the kernel-shaped link, as ``python -m testbed.emulate.clients CONFIG.json``
inside the node namespace."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.config.resolve import Resolved
from testbed.emulate.fleet import Fleet, FleetConfig
from testbed.emulate.handoff import load_resolved

__all__ = ["FleetConfig", "main", "run_fleet"]


def run_fleet(res: Resolved, cfg: FleetConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the fleet against a server already listening at ``cfg.host:cfg.port``."""
    fleet = Fleet(res, cfg)
    df = asyncio.run(fleet.run())
    meta = dict(fleet.stats)
    meta["end_s"] = fleet.meta_end
    meta["uplink_bytes"] = fleet.shaper.bytes_sent if fleet.shaper else 0
    meta["open_at_end"] = fleet.responses.open
    return df, meta


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.emulate.clients CONFIG.json``: run the fleet (inside a namespace) and
    write ``records.parquet`` and ``fleet.json`` into CONFIG's ``out`` folder. CONFIG names the
    resolved scenario's hand-off file (``resolved``) and the :class:`FleetConfig` fields."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    cfg = FleetConfig(host=spec["host"], port=spec["port"], time_scale=spec["time_scale"],
                      shape_uplink=spec["shape_uplink"], uplink_latency=spec.get("uplink_latency"),
                      app_latency=spec.get("app_latency", False), drain_cap=spec["drain_cap"])
    df, meta = run_fleet(load_resolved(spec["resolved"]), cfg)
    out = Path(spec["out"])
    df.to_parquet(out / "records.parquet", index=False)
    (out / "fleet.json").write_text(json.dumps(meta, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
