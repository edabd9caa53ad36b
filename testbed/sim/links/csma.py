"""``csma``: a shared 802.11 cell, the distributed coordination function (DCF) as an event-level model.

Every station with frames queued (the nodes, and the access point for the results) contends with
binary exponential backoff; stations whose backoff expires in the same slot collide; a station
retries a failed (A-)MPDU up to ``retry_limit`` times and then drops the payload
(``dropped_on_link``). Frame sizes and airtimes come from :mod:`testbed.sim.links.phy`.

The model follows the slot semantics of Bianchi (2000), "Performance analysis of the IEEE 802.11
distributed coordination function", IEEE JSAC 18(3): a backoff counter is decremented at every
slot boundary, and a busy period (success or collision, including its trailing DIFS) counts as one
slot for the deferring stations. It jumps over idle slots: all backoff counters live on one virtual
slot clock in a heap, and the next event is the earliest expiry, so a PPDU exchange costs two
events however many idle slots precede it. A collision or a lost frame occupies the air for the
longest PPDU + SIFS + ACK + DIFS (ACK timeout for the senders, EIFS for the others), so
``T_c = T_s`` for equal frames, as in Bianchi's basic-access analysis with EIFS
(:mod:`testbed.sim.links.bianchi`).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import simpy

from testbed.core.channel import GilbertElliott
from testbed.core.monitor import Level
from testbed.core.records import STATUS, Records
from testbed.sim.links.base import LINKS, Link, LinkContext, StationLevels
from testbed.sim.links.phy import OK_END, Dcf, ack_time, dcf_for, exchange_time, mpdus_per_ppdu

__all__ = ["CsmaCell", "CsmaPort", "build", "saturation_throughput"]

_DROPPED = STATUS.index("dropped_on_link")

_Plan = list[tuple["_Station", float, float, float, int, int]]
"""Per sender of one access: (station, PPDU s, ACK s, data bytes, MPDUs, MPDUs lost)."""


class _Station:
    """One contender: a node's radio (uplink) or the access point (downlink), with its queue."""

    __slots__ = ("airtime", "end_col", "in_station", "index", "left", "on_done", "queue", "retries", "rid",
                 "since", "stage", "start_col", "up")

    def __init__(self, index: int, up: bool, in_station: Level, start_col: array[float], end_col: array[float],
                 on_done: Callable[[int], None]) -> None:
        self.index, self.up = index, up
        self.queue: deque[int] = deque()
        self.rid = -1          # head-of-line request, -1 when idle
        self.left = 0.0        # its bytes still to deliver
        self.retries = 0
        self.stage = 0
        self.since = 0.0       # when the head-of-line request started contending
        self.airtime = 0.0     # own tx + rx time of the head-of-line request
        self.in_station, self.start_col, self.end_col, self.on_done = in_station, start_col, end_col, on_done


class CsmaPort:
    """The channel interface (``submit(rid, seconds)``) of one direction of a :class:`CsmaCell`.

    ``seconds`` is ignored: the cell reads the bytes from the records and uses each node's rate.
    """

    __slots__ = ("submit",)

    def __init__(self, submit: Callable[[int, float], None]) -> None:
        self.submit = submit


class CsmaCell:
    """One 802.11 collision domain: a station per node (uplink) and the access point (downlink).

    ``rates[i]`` is node i's PHY rate (bytes/s); results are sent at min(node rate, ``down_rate``).
    Each request's radio energy at its node is added to ``radio_tx_j`` (own PPDUs and the ACKs of
    its result), ``radio_rx_j`` (ACKs of its payload and its result PPDU) and ``radio_idle_j``
    (listening while its payload contends, defers and waits for ACK timeouts).
    """

    def __init__(self, env: simpy.Environment, rec: Records, *, dcf: Dcf, rates: Sequence[float],
                 down_rate: float, rng: np.random.Generator,
                 on_delivered: Callable[[int], None], on_returned: Callable[[int], None],
                 up: StationLevels, down: StationLevels,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        self.env, self.rec, self.dcf, self.rng = env, rec, dcf, rng
        self.rates = list(rates)
        self.down_rate = down_rate
        self.up_busy, self.down_busy = up.busy, down.busy
        n = len(self.rates)
        self.stations = [_Station(i, True, up.in_station, rec.tx_start_s, rec.tx_end_s, on_delivered)
                         for i in range(n)]
        self.ap = _Station(n, False, down.in_station, rec.downlink_start_s, rec.downlink_end_s, on_returned)
        self.uplink = CsmaPort(self._submit_up)
        self.downlink = CsmaPort(self._submit_down)
        self.heap: list[tuple[int, int]] = []  # (virtual slot of backoff expiry, station index)
        self.vslot = 0          # virtual slot index of the first idle slot boundary
        self.t_idle = 0.0       # time of that boundary (end of the last busy period + DIFS)
        self.busy = False
        self.next_fire = -1     # expiry slot of the scheduled start, -1 when none
        self.pending: simpy.Event | None = None  # the scheduled start that is still current
        self.plan: _Plan = []   # the senders of the access on the air
        self.plan_slot = 0      # its virtual slot
        self.plan_dirs = (False, False)  # whether it holds the uplink, the downlink
        self.on_dropped = on_dropped
        self.ppdu_k = {r: mpdus_per_ppdu(r, dcf) for r in set(self.rates) | {min(r, down_rate) for r in self.rates}}
        self._u: list[float] = []
        self._u_next = 0
        ge = dcf.gilbert_elliott  # one Gilbert-Elliott channel per station (the AP's last), from this stream
        self.channels = [GilbertElliott(*ge) for _ in range(n + 1)] if ge is not None else None
        self._windows = [dcf.window(i) + 1 for i in range(dcf.stages + 1)]
        self._exchanges: dict[tuple[float, float], tuple[int, float, float]] = {}
        self.exchanges = 0
        self.collisions = 0
        self.drops = 0

    def counters(self) -> dict[str, float]:
        """Accesses (busy periods), how many collided, payloads dropped after the retry limit."""
        return {"exchanges": float(self.exchanges), "collisions": float(self.collisions),
                "drops": float(self.drops)}

    # -- arrivals -----------------------------------------------------------------------------
    def _submit_up(self, rid: int, _seconds: float) -> None:
        self._enqueue(self.stations[self.rec.node[rid]], rid)

    def _submit_down(self, rid: int, _seconds: float) -> None:
        self._enqueue(self.ap, rid)

    def _enqueue(self, st: _Station, rid: int) -> None:
        now, rec = self.env.now, self.rec
        st.in_station.change(now, 1)
        if st.up:
            rec.radio_tx_j[rid] = rec.radio_rx_j[rid] = rec.radio_idle_j[rid] = 0.0
        if st.rid >= 0:
            st.queue.append(rid)
            return
        self._take(st, rid, now)
        if self.busy:
            fire = self.plan_slot + 1 + self._backoff(st)  # after this busy slot
        else:
            passed = now - self.t_idle
            k0 = math.ceil(passed / self.dcf.slot - 1e-9) if passed > 0 else 0
            fire = self.vslot + k0 + self._backoff(st)
        heapq.heappush(self.heap, (fire, st.index))
        if not self.busy and (self.next_fire < 0 or fire < self.next_fire):
            self._schedule()

    def _take(self, st: _Station, rid: int, now: float) -> None:
        rec = self.rec
        st.rid, st.retries, st.stage, st.since, st.airtime = rid, 0, 0, now, 0.0
        st.left = rec.payload_bytes[rid] if st.up else rec.result_bytes[rid]

    def _backoff(self, st: _Station) -> int:
        """Uniform in 0..CW(stage), from a block of uniforms drawn ahead (same stream, fewer calls)."""
        i = self._u_next
        if i == len(self._u):
            self._u, i = self.rng.random(4096).tolist(), 0
        self._u_next = i + 1
        return int(self._u[i] * self._windows[st.stage])

    def _exchange(self, rate: float, data: float) -> tuple[int, float, float]:
        """(MPDUs, PPDU, ACK) of one access, memoised per (rate, bytes)."""
        key = (rate, data)
        hit = self._exchanges.get(key)
        if hit is None:
            k = max(1, math.ceil(data / self.dcf.msdu_data - 1e-9))
            ppdu, ack, _ = exchange_time(k, data, rate, self.dcf)
            hit = self._exchanges[key] = (k, ppdu, ack)
        return hit

    def _schedule(self) -> None:
        if not self.heap:
            self.pending = None
            self.next_fire = -1
            return
        fire = self.heap[0][0]
        self.next_fire = fire
        at = self.t_idle + (fire - self.vslot) * self.dcf.slot
        delay = at - self.env.now
        self.pending = self.env.timeout(delay if delay > 0 else 0.0)
        self.pending.callbacks.append(self._start)

    # -- one access: start and end of the busy period ---------------------------------------
    def _rate(self, st: _Station) -> float:
        r = self.rates[self.rec.node[st.rid]]
        return r if st.up else min(r, self.down_rate)

    def _start(self, event: simpy.Event) -> None:
        if event is not self.pending:
            return  # superseded by an earlier expiry
        now, heap, dcf = self.env.now, self.heap, self.dcf
        fire = heap[0][0]  # every station whose backoff expires in this slot sends
        n_nodes = len(self.stations)
        senders: list[_Station] = []
        while heap and heap[0][0] == fire:
            i = heapq.heappop(heap)[1]
            senders.append(self.stations[i] if i < n_nodes else self.ap)
        collided = len(senders) > 1
        fer = dcf.frame_error_rate
        plan: _Plan = []
        longest = 0.0
        up = down = False
        for st in senders:
            rate = self._rate(st)
            data = min(st.left, self.ppdu_k[rate] * dcf.msdu_data)
            k, ppdu, ack = self._exchange(rate, data)
            if collided:
                lost = k
            elif self.channels is not None:
                lost = self.channels[st.index].losses(self.rng.random(2 * k).tolist())
            else:
                lost = int(self.rng.binomial(k, fer)) if fer > 0 else 0
            plan.append((st, ppdu, ack, data, k, lost))
            if ppdu > longest:
                longest = ppdu
            if st.up:
                up = True
            else:
                down = True
            col = st.start_col
            if col[st.rid] != col[st.rid]:  # NaN: first attempt of this payload
                col[st.rid] = now
        # a lone sender waits for its ACK / Block Ack (or its timeout); after a collision the
        # others defer EIFS = SIFS + ACK at the basic rate + DIFS
        respond = plan[0][2] if not collided else ack_time(dcf, dcf.basic_rate)
        self.busy = True
        self.pending = None
        self.next_fire = -1
        self.plan, self.plan_slot, self.plan_dirs = plan, fire, (up, down)
        if up:
            self.up_busy.change(now, 1)
        if down:
            self.down_busy.change(now, 1)
        self.exchanges += 1
        self.collisions += collided
        self.env.timeout(longest + dcf.sifs + respond).callbacks.append(self._end)

    def _end(self, _event: simpy.Event) -> None:
        now = self.env.now
        plan, (up, down) = self.plan, self.plan_dirs
        self.plan = []
        self.busy = False
        self.vslot = self.plan_slot + 1
        self.t_idle = now + self.dcf.difs
        done: list[tuple[_Station, int, bool]] = []
        for st, ppdu, ack, data, k, lost in plan:
            rid = st.rid
            ok = self._settle(st, ppdu, ack, data, k, lost, now)
            if ok is not None:
                done.append((st, rid, ok))
                self._next(st, now)
            if st.rid >= 0:
                heapq.heappush(self.heap, (self.vslot + self._backoff(st), st.index))
        if up:
            self.up_busy.change(now, -1)
        if down:
            self.down_busy.change(now, -1)
        self._schedule()
        for st, rid, ok in done:
            if ok:
                st.on_done(rid)
            elif self.on_dropped is not None:
                self.on_dropped(rid)

    def _settle(self, st: _Station, ppdu: float, ack: float, data: float, k: int, lost: int,
                now: float) -> bool | None:
        """Account one sender's access: True when its payload is complete, False when dropped after
        ``retry_limit`` retries, None while it goes on."""
        dcf, rec, rid = self.dcf, self.rec, st.rid
        ok = lost < k
        heard = ack if ok else 0.0
        # the node sends its payload PPDU and hears the ACK; for a result it hears the PPDU and
        # sends the ACK
        if st.up:
            rec.radio_tx_j[rid] += dcf.tx_power * ppdu
            rec.radio_rx_j[rid] += dcf.rx_power * heard
        else:
            rec.radio_rx_j[rid] += dcf.rx_power * ppdu
            rec.radio_tx_j[rid] += dcf.tx_power * heard
        st.airtime += ppdu + heard
        if ok:
            st.left -= data * (k - lost) / k
            st.retries = 0
            st.stage = 0
            if st.left <= OK_END:
                st.end_col[rid] = now
                return True
            return None
        st.retries += 1
        if st.retries > dcf.retry_limit:
            rec.status[rid] = _DROPPED
            rec.finished_s[rid] = now
            self.drops += 1
            return False
        if st.stage < dcf.stages:
            st.stage += 1
        return None

    def _next(self, st: _Station, now: float) -> None:
        """Close the head-of-line request's accounting and take the next one, if any."""
        rid = st.rid
        if st.up:
            self.rec.radio_idle_j[rid] += self.dcf.idle_power * max(0.0, now - st.since - st.airtime)
        st.in_station.change(now, -1)
        if st.queue:
            self._take(st, st.queue.popleft(), now)
        else:
            st.rid = -1


def saturation_throughput(n: int, rate: float, payload: float, dcf: Dcf, duration: float,
                          seed: int = 0, warmup: float = 0.05) -> dict[str, float]:
    """Run ``n`` always-backlogged stations (each submits a new payload the moment the last one is
    delivered or dropped) and return delivered payload bytes/s over ``[warmup, duration)``, the
    collision fraction of accesses and the drop count."""
    env = simpy.Environment()
    rec = Records(0)
    up, down = (StationLevels(Level(warmup, duration), Level(warmup, duration)) for _ in range(2))
    delivered = [0.0]
    cell: CsmaCell

    def new(node: int) -> None:
        rid = rec.new(node, 0, 0, env.now)
        rec.payload_bytes[rid] = payload
        cell.uplink.submit(rid, 0.0)

    def on_delivered(rid: int) -> None:
        if env.now >= warmup:
            delivered[0] += rec.payload_bytes[rid]
        new(rec.node[rid])

    def on_dropped(rid: int) -> None:
        new(rec.node[rid])

    cell = CsmaCell(env, rec, dcf=dcf, rates=[rate] * n, down_rate=rate, rng=np.random.default_rng(seed),
                    on_delivered=on_delivered, on_returned=lambda rid: None, up=up, down=down,
                    on_dropped=on_dropped)
    for i in range(n):
        new(i)
    env.run(until=duration)
    return {"throughput": delivered[0] / (duration - warmup),
            "collision_fraction": cell.collisions / max(1, cell.exchanges),
            "exchanges": float(cell.exchanges), "drops": float(cell.drops)}


@LINKS.register("csma")
def build(ctx: LinkContext) -> Link:
    """One 802.11 cell carries both directions; ``ctx.rates`` are the nodes' PHY rates."""
    cell = CsmaCell(ctx.env, ctx.rec, dcf=dcf_for(ctx.spec.csma), rates=ctx.rates, down_rate=ctx.down_rate,
                    rng=ctx.rng, on_delivered=ctx.on_delivered, on_returned=ctx.on_returned,
                    up=ctx.up, down=ctx.down)
    return Link(cell.uplink, cell.downlink, one_on_air=True, counters=cell.counters)
