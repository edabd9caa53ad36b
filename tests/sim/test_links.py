"""The link registry and interface: every model is built from a LinkContext alone, exact traces of the
FIFO and processor-sharing channels, and an unknown model name listing what is available."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from testbed.config.schema import LinkSpec
from testbed.core.monitor import Level
from testbed.core.records import Records
from testbed.errors import ConfigError
from testbed.sim.links import LINKS, Link, LinkContext, StationLevels


def _context(model: str, rates: list[float]) -> tuple[LinkContext, list[tuple[str, int, float]]]:
    env, rec = simpy.Environment(), Records(0)
    spec = LinkSpec.model_validate({"model": model, "datarate": "65 Mbit/s"})
    log: list[tuple[str, int, float]] = []
    levels = [StationLevels(Level(0.0, 10.0), Level(0.0, 10.0)) for _ in range(2)]
    ctx = LinkContext(env=env, rec=rec, spec=spec, rates=rates, down_rate=rates[0], rng=np.random.default_rng(0),
                      on_delivered=lambda rid: log.append(("up", rid, env.now)),
                      on_returned=lambda rid: log.append(("down", rid, env.now)), up=levels[0], down=levels[1])
    return ctx, log


def _send(ctx: LinkContext, link: Link, seconds: list[float]) -> None:
    for node, s in enumerate(seconds):
        rid = ctx.rec.new(node, 0, 0, 0.0)
        ctx.rec.payload_bytes[rid] = 1000.0
        link.uplink.submit(rid, s)


def test_every_registered_model_prepares_and_an_unknown_one_is_refused() -> None:
    from testbed.run.prepare import prepare_dict
    from tests.conftest import base_scenario

    assert LINKS.names() == ("csma", "fair_share", "shared_fifo")
    for name in LINKS.names():
        link = {"model": name, "datarate": "1 MB/s", "latency": "1 ms"}
        assert prepare_dict(base_scenario(link=link)).scenario.link.model == name
    with pytest.raises(ConfigError, match=r"link\.model.*csma, fair_share, shared_fifo"):
        prepare_dict(base_scenario(link={"model": "token_ring", "datarate": "1 MB/s"}))


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"link\.model.*csma, fair_share, shared_fifo"):
        LINKS.get("token_ring", "link.model")


def test_fifo_trace_one_on_the_air() -> None:
    ctx, log = _context("shared_fifo", [1.0, 1.0])
    link = LINKS.get("shared_fifo")(ctx)
    _send(ctx, link, [2.0, 1.0])
    ctx.env.run()
    assert log == [("up", 0, 2.0), ("up", 1, 3.0)]
    assert list(ctx.rec.tx_start_s[:2]) == [0.0, 2.0] and list(ctx.rec.tx_end_s[:2]) == [2.0, 3.0]
    assert ctx.up.busy.mean(10.0) == pytest.approx(0.3) and ctx.up.in_station.mean(10.0) == pytest.approx(0.5)
    assert link.one_on_air and link.waiting(0.5, 0.3, 0.0) == pytest.approx(0.2)


def test_sharing_trace_everyone_in_service() -> None:
    ctx, log = _context("fair_share", [1.0, 1.0])
    link = LINKS.get("fair_share")(ctx)
    _send(ctx, link, [2.0, 1.0])  # both at half rate: the short one ends at 2, the long one at 3
    ctx.env.run()
    assert log == [("up", 1, 2.0), ("up", 0, 3.0)]
    assert list(ctx.rec.tx_start_s[:2]) == [0.0, 0.0]
    assert ctx.up.busy.mean(10.0) == pytest.approx(0.3) and ctx.up.in_station.mean(10.0) == pytest.approx(0.5)
    assert not link.one_on_air and link.waiting(0.5, 0.3, 0.0) == 0.0


def test_csma_cell_carries_both_directions() -> None:
    ctx, log = _context("csma", [65e6 / 8])
    link = LINKS.get("csma")(ctx)
    _send(ctx, link, [0.0])  # seconds are ignored: the cell times the bytes itself
    ctx.env.run()
    assert [(d, rid) for d, rid, _ in log] == [("up", 0)]
    ctx.rec.result_bytes[0] = 64.0
    link.downlink.submit(0, 0.0)
    ctx.env.run()
    assert [(d, rid) for d, rid, _ in log] == [("up", 0), ("down", 0)]
    assert link.counters() == {"exchanges": 2.0, "collisions": 0.0, "drops": 0.0}
    assert ctx.rec.radio_tx_j[0] > 0 and ctx.rec.radio_rx_j[0] > 0


def _run_fifo(submits: list[tuple[float, float]], horizon: float, ahead: bool) -> list:
    """The event-driven FIFO channel (or the one that knows its ends at once) fed ``submits`` and run to
    ``horizon``: its stamps, hand-offs, and its levels' means, peaks and values."""
    from testbed.sim.links.fifo import AheadFifoChannel, FifoChannel

    env, rec = simpy.Environment(), Records(0)
    levels = StationLevels(Level(0.0, horizon), Level(0.0, horizon))
    handed: list[tuple[int, float]] = []
    common = {"start_col": rec.downlink_start_s, "end_col": rec.downlink_end_s,
              "in_station": levels.in_station, "busy": levels.busy}
    channel: FifoChannel | AheadFifoChannel
    if ahead:
        channel = AheadFifoChannel(env, on_sent=lambda rid, end: handed.append((rid, end)), horizon=horizon, **common)
    else:
        channel = FifoChannel(env, on_done=lambda rid: handed.append((rid, env.now)), **common)
    for at, seconds in submits:
        rid = rec.new(0, 0, 0, at)
        env.timeout(at).callbacks.append(lambda _e, rid=rid, seconds=seconds: channel.submit(rid, seconds))
    env.run(until=horizon)
    if isinstance(channel, AheadFifoChannel):
        channel.settle(env.now)
    stamps = [list(rec.downlink_start_s), list(rec.downlink_end_s)]
    return [stamps, sorted(handed), [(x.mean(horizon), x.peak, x.value) for x in (levels.in_station, levels.busy)]]


def test_a_fifo_that_knows_its_ends_at_once_stamps_and_levels_as_the_event_driven_one() -> None:
    rng = np.random.default_rng(5)
    at = np.cumsum(rng.exponential(1.0, 400))
    submits = list(zip(at.tolist(), rng.exponential(0.9, 400).tolist()))
    for horizon in (50.0, float(at[-1]) + 100.0):  # cut mid-run (rows in flight), and drained
        events, ahead = _run_fifo(submits, horizon, False), _run_fifo(submits, horizon, True)
        np.testing.assert_array_equal(np.array(events[0]), np.array(ahead[0]))  # NaN where not (yet) sent
        assert events[1:] == ahead[1:]
