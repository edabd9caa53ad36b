"""A shared 802.11 cell: the distributed coordination function (DCF) as an event-level model.

Payloads are cut into MSDUs of at most ``mtu`` bytes (IP + UDP headers included), each carried in an
MPDU (QoS MAC header, FCS, LLC/SNAP); 802.11n/ac senders aggregate up to ``max_aggregate`` MPDUs of
one payload in an A-MPDU answered by a Block Ack. Every station with frames queued (the nodes, and
the access point for the results) contends with binary exponential backoff; stations whose backoff
expires in the same slot collide; a station retries a failed (A-)MPDU up to ``retry_limit`` times
and then drops the payload (``dropped_on_link``).

Timing (IEEE Std 802.11-2016): slot 9 us, SIFS 16 us, DIFS = SIFS + 2 slots (10.3.2.3.7), CWmin 15,
CWmax 1023 (Table 17-21, OFDM PHY characteristics; same for HT, Table 19-25, and VHT, Table 21-28);
OFDM PPDU duration ``preamble + 4 us * ceil((16 + 8 * PSDU + 6) / N_DBPS)`` (17.4.3, eq. 17-29);
preamble + SIGNAL 20 us (legacy, 17.3.2), 36 us for one-stream HT-mixed (L-STF, L-LTF, L-SIG,
HT-SIG 8 us, HT-STF 4 us, one HT-LTF 4 us; 19.3.7), 40 us for one-stream VHT (adds VHT-SIG-B);
ACK (14 B) and compressed Block Ack (32 B) at a basic rate with the legacy preamble; retry limit 7
(dot11ShortRetryLimit default); aPPDUMaxTime 5.484 ms; A-MPDU at most 65,535 B (HT) / 1,048,575 B
(VHT) and 64 MPDUs (Block Ack window).

The model follows the slot semantics of Bianchi (2000), "Performance analysis of the IEEE 802.11
distributed coordination function", IEEE JSAC 18(3): a backoff counter is decremented at every
slot boundary, and a busy period (success or collision, including its trailing DIFS) counts as one
slot for the deferring stations. It jumps over idle slots: all backoff counters live on one virtual
slot clock in a heap, and the next event is the earliest expiry, so a PPDU exchange costs two
events however many idle slots precede it. A collision or a lost frame occupies the air for the
longest PPDU + SIFS + ACK + DIFS (ACK timeout for the senders, EIFS for the others), so
``T_c = T_s`` for equal frames, as in Bianchi's basic-access analysis with EIFS.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import simpy

from testbed.core.monitor import Level
from testbed.core.records import STATUS, Records

__all__ = [
    "Dcf", "STANDARDS", "dcf_for", "ppdu_time", "ack_time", "psdu_bytes", "mpdus_per_ppdu",
    "exchange_time", "payload_airtime", "mac_efficiency", "bianchi_tau", "bianchi_fixed_point",
    "bianchi_throughput", "CsmaCell", "CsmaPort", "saturation_throughput",
]

_DROPPED = STATUS.index("dropped_on_link")
_OK_END = 1e-9  # bytes left below which a payload is complete


@dataclass(frozen=True)
class Dcf:
    """802.11 DCF and PHY parameters (seconds, bytes, bytes/s, watts); defaults: one-stream 802.11n."""

    slot: float = 9e-6
    sifs: float = 16e-6
    cw_min: int = 15
    cw_max: int = 1023
    retry_limit: int = 7
    preamble: float = 36e-6           # HT-mixed, one spatial stream
    legacy_preamble: float = 20e-6    # ACK / Block Ack PPDUs (non-HT)
    symbol: float = 4e-6              # OFDM symbol, long guard interval
    basic_rate: float = 3e6           # 24 Mbit/s for control responses
    mtu: int = 1500                   # MSDU (IP packet) bytes
    ip_header: int = 28               # IPv4 20 + UDP 8
    mac_header: int = 38              # QoS MAC header 26 + FCS 4 + LLC/SNAP 8
    delimiter: int = 4                # A-MPDU subframe delimiter
    ack_bytes: int = 14
    block_ack_bytes: int = 32         # compressed Block Ack
    max_aggregate: int = 64
    max_ampdu_bytes: int = 65_535
    max_ppdu_time: float = 5.484e-3
    frame_error_rate: float = 0.0
    tx_power: float = 1.28
    rx_power: float = 0.94
    idle_power: float = 0.82

    @property
    def difs(self) -> float:
        """DIFS = SIFS + 2 slots (IEEE 802.11-2016, 10.3.2.3.7)."""
        return self.sifs + 2 * self.slot

    @property
    def msdu_data(self) -> int:
        """Application bytes per full MSDU."""
        return self.mtu - self.ip_header

    @property
    def stages(self) -> int:
        """Bianchi's m: how many times the window doubles from CWmin+1 to CWmax+1."""
        return int(round(math.log2((self.cw_max + 1) / (self.cw_min + 1))))

    def window(self, stage: int) -> int:
        """Contention window CW at a backoff stage (backoff uniform in 0..CW)."""
        return min((self.cw_min + 1) << stage, self.cw_max + 1) - 1


STANDARDS: dict[str, Dcf] = {
    "802.11a": Dcf(preamble=20e-6, max_aggregate=1, max_ampdu_bytes=4095),
    "802.11n": Dcf(),
    "802.11ac": Dcf(preamble=40e-6, max_ampdu_bytes=1_048_575),
}
"""PHY presets; slot, SIFS, CW and the rest are shared by the 5 GHz OFDM, HT and VHT PHYs."""


def dcf_for(spec: object) -> Dcf:
    """The :class:`Dcf` of a validated ``link.csma`` section (a ``CsmaSpec``)."""
    g = spec.__getattribute__
    base = STANDARDS[g("standard")]
    fields = dict(slot=g("slot"), sifs=g("sifs"), cw_min=g("cw_min"), cw_max=g("cw_max"),
                  retry_limit=g("retry_limit"), basic_rate=g("basic_rate"), mtu=int(g("mtu")),
                  frame_error_rate=g("frame_error_rate"), tx_power=g("tx_power"),
                  rx_power=g("rx_power"), idle_power=g("idle_power"))
    if g("preamble") is not None:
        fields["preamble"] = g("preamble")
    if g("max_aggregate") is not None:
        fields["max_aggregate"] = g("max_aggregate")
    return replace(base, **fields)


# -- pure arithmetic ---------------------------------------------------------------------------
def ppdu_time(psdu: float, rate: float, preamble: float, symbol: float = 4e-6) -> float:
    """OFDM PPDU duration (IEEE 802.11-2016 eq. 17-29): preamble + whole symbols for SERVICE (16
    bits) + PSDU + tail (6 bits) at ``rate`` bytes/s."""
    bits_per_symbol = 8.0 * rate * symbol
    return preamble + symbol * math.ceil((22 + 8 * psdu) / bits_per_symbol - 1e-9)


def ack_time(dcf: Dcf, rate: float, block: bool = False) -> float:
    """ACK (or compressed Block Ack) duration at the basic rate (no faster than the data rate)."""
    size = dcf.block_ack_bytes if block else dcf.ack_bytes
    return ppdu_time(size, min(dcf.basic_rate, rate), dcf.legacy_preamble, dcf.symbol)


def psdu_bytes(k: int, data: float, dcf: Dcf) -> float:
    """PSDU bytes of ``k`` MPDUs carrying ``data`` application bytes (an A-MPDU when k > 1:
    a 4-byte delimiter per subframe, each padded to 4 bytes)."""
    per = dcf.ip_header + dcf.mac_header
    if k == 1:
        return data + per
    full = min(data, (k - 1) * dcf.msdu_data)
    sub = dcf.delimiter + dcf.msdu_data + per
    sub_padded = sub + (-sub) % 4
    full_frames = full / dcf.msdu_data
    return full_frames * sub_padded + dcf.delimiter + (data - full) + per


def mpdus_per_ppdu(rate: float, dcf: Dcf) -> int:
    """Most full MPDUs in one PPDU: bounded by the Block Ack window, the A-MPDU length and
    aPPDUMaxTime."""
    k = max(1, dcf.max_aggregate)
    while k > 1 and (psdu_bytes(k, k * dcf.msdu_data, dcf) > dcf.max_ampdu_bytes
                     or ppdu_time(psdu_bytes(k, k * dcf.msdu_data, dcf), rate, dcf.preamble, dcf.symbol)
                     > dcf.max_ppdu_time):
        k -= 1
    return k


def exchange_time(k: int, data: float, rate: float, dcf: Dcf) -> tuple[float, float, float]:
    """(PPDU, ACK, whole busy period) of one access carrying ``k`` MPDUs with ``data`` bytes:
    the busy period is PPDU + SIFS + ACK/BA + DIFS (Bianchi's T_s; also T_c, see module doc)."""
    ppdu = ppdu_time(psdu_bytes(k, data, dcf), rate, dcf.preamble, dcf.symbol)
    ack = ack_time(dcf, rate, block=k > 1)
    return ppdu, ack, ppdu + dcf.sifs + ack + dcf.difs


def payload_airtime(nbytes: float, rate: float, dcf: Dcf) -> float:
    """Mean time one station alone on the air needs for a payload (no errors): for each access,
    the busy period plus a mean stage-0 backoff of CWmin/2 slots."""
    per_ppdu = mpdus_per_ppdu(rate, dcf) * dcf.msdu_data
    total, left = 0.0, float(nbytes)
    while True:
        data = min(left, per_ppdu)
        k = max(1, math.ceil(data / dcf.msdu_data - 1e-9))
        total += exchange_time(k, data, rate, dcf)[2] + dcf.slot * dcf.cw_min / 2
        left -= data
        if left <= _OK_END:
            return total


def mac_efficiency(nbytes: float, rate: float, dcf: Dcf) -> float:
    """Goodput of a single station over its PHY rate for payloads of ``nbytes``."""
    return nbytes / (rate * payload_airtime(nbytes, rate, dcf))


def bianchi_tau(p: float, w: int, m: int, retry_limit: int | None = None) -> float:
    """Attempt probability per slot given the conditional failure probability ``p``.

    ``w`` = CWmin + 1, ``m`` doublings. With ``retry_limit`` None this is Bianchi (2000) eq. (7),
    2(1-2p) / ((1-2p)(W+1) + pW(1-(2p)^m)); with R retries it is the same Markov chain cut after
    stage R (stages 0..R, window min(2^i, 2^m) W): tau = sum p^i / sum p^i (W_i + 1) / 2.
    """
    if retry_limit is None:
        if abs(1 - 2 * p) < 1e-12:
            p += 1e-9
        return 2 * (1 - 2 * p) / ((1 - 2 * p) * (w + 1) + p * w * (1 - (2 * p) ** m))
    num = den = 0.0
    for i in range(retry_limit + 1):
        pi = p**i
        num += pi
        den += pi * ((w << min(i, m)) + 1) / 2
    return num / den


def bianchi_fixed_point(n: int, w: int, m: int, retry_limit: int | None = None,
                        frame_error_rate: float = 0.0) -> tuple[float, float]:
    """(tau, p) solving tau = tau(p), p = 1 - (1 - tau)^(n-1) (1 - FER) by bisection on p."""
    def gap(p: float) -> float:
        tau = bianchi_tau(p, w, m, retry_limit)
        return 1 - (1 - tau) ** (n - 1) * (1 - frame_error_rate) - p

    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
    p = (lo + hi) / 2
    return bianchi_tau(p, w, m, retry_limit), p


def bianchi_throughput(n: int, payload: float, t_s: float, t_c: float, slot: float, w: int, m: int,
                       retry_limit: int | None = None, frame_error_rate: float = 0.0) -> float:
    """Saturation throughput (payload bytes/s) of ``n`` stations (Bianchi 2000, eq. 13):
    S = P_s P_tr E[P] / ((1 - P_tr) sigma + P_tr P_s T_s + P_tr (1 - P_s) T_c); a frame lost to
    errors costs T_c."""
    tau, _ = bianchi_fixed_point(n, w, m, retry_limit, frame_error_rate)
    p_tr = 1 - (1 - tau) ** n
    p_one = n * tau * (1 - tau) ** (n - 1) / p_tr
    p_s = p_one * (1 - frame_error_rate)
    return p_s * p_tr * payload / ((1 - p_tr) * slot + p_tr * p_s * t_s + p_tr * (1 - p_s) * t_c)


# -- the simulated cell --------------------------------------------------------------------------
class _Station:
    __slots__ = ("index", "queue", "rid", "left", "retries", "stage", "since", "airtime", "up",
                 "in_station", "start_col", "end_col", "on_done")

    def __init__(self, index: int, up: bool, in_station: Level, start_col: array, end_col: array,
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

    def __init__(self, env: simpy.Environment, rec: Records, dcf: Dcf, rates: Sequence[float],
                 down_rate: float, rng: np.random.Generator,
                 on_delivered: Callable[[int], None], on_returned: Callable[[int], None],
                 up_in_station: Level, up_busy: Level, down_in_station: Level, down_busy: Level,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        self.env, self.rec, self.dcf, self.rng = env, rec, dcf, rng
        self.rates = list(rates)
        self.down_rate = down_rate
        self.up_busy, self.down_busy = up_busy, down_busy
        n = len(self.rates)
        self.stations = [_Station(i, True, up_in_station, rec.tx_start_s, rec.tx_end_s, on_delivered)
                         for i in range(n)]
        self.ap = _Station(n, False, down_in_station, rec.downlink_start_s, rec.downlink_end_s, on_returned)
        self.uplink = CsmaPort(self._submit_up)
        self.downlink = CsmaPort(self._submit_down)
        self.heap: list[tuple[int, int]] = []  # (virtual slot of backoff expiry, station index)
        self.vslot = 0          # virtual slot index of the first idle slot boundary
        self.t_idle = 0.0       # time of that boundary (end of the last busy period + DIFS)
        self.busy = False
        self.next_fire = -1     # expiry slot of the scheduled start, -1 when none
        self.token = 0
        self.plan: tuple[int, list[tuple[_Station, float, float, float, int, int]]] | None = None
        self.on_dropped = on_dropped
        self.ppdu_k = {r: mpdus_per_ppdu(r, dcf) for r in set(self.rates) | {min(r, down_rate) for r in self.rates}}
        self._u: list[float] = []
        self._u_next = 0
        self._windows = [dcf.window(i) + 1 for i in range(dcf.stages + 1)]
        self._exchanges: dict[tuple[float, float], tuple[int, float, float]] = {}
        self.exchanges = 0
        self.collisions = 0
        self.drops = 0

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
            fire = self.plan[0] + 1 + self._backoff(st)  # type: ignore[index]  # after this busy slot
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
        self.token += 1
        if not self.heap:
            self.next_fire = -1
            return
        fire = self.heap[0][0]
        self.next_fire = fire
        at = self.t_idle + (fire - self.vslot) * self.dcf.slot
        delay = at - self.env.now
        self.env.timeout(delay if delay > 0 else 0.0, self.token).callbacks.append(self._start)

    # -- one access: start and end of the busy period ---------------------------------------
    def _rate(self, st: _Station) -> float:
        r = self.rates[self.rec.node[st.rid]]
        return r if st.up else min(r, self.down_rate)

    def _start(self, event: simpy.Event) -> None:
        if event._value != self.token:
            return  # superseded by an earlier expiry
        now, heap, dcf = self.env.now, self.heap, self.dcf
        fire = heap[0][0]
        n_nodes = len(self.stations)
        senders: list[_Station] = []
        while heap and heap[0][0] == fire:
            i = heapq.heappop(heap)[1]
            senders.append(self.stations[i] if i < n_nodes else self.ap)
        collided = len(senders) > 1
        fer = dcf.frame_error_rate
        plan: list[tuple[_Station, float, float, float, int, int]] = []
        longest = 0.0
        up = down = False
        for st in senders:
            rate = self._rate(st)
            data = min(st.left, self.ppdu_k[rate] * dcf.msdu_data)
            k, ppdu, ack = self._exchange(rate, data)
            lost = k if collided else (int(self.rng.binomial(k, fer)) if fer > 0 else 0)
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
        self.next_fire = -1
        self.plan = (fire, plan)
        if up:
            self.up_busy.change(now, 1)
        if down:
            self.down_busy.change(now, 1)
        self.exchanges += 1
        self.collisions += collided
        self.env.timeout(longest + dcf.sifs + respond, (up, down)).callbacks.append(self._end)

    def _end(self, event: simpy.Event) -> None:
        up, down = event._value
        now, dcf, rec = self.env.now, self.dcf, self.rec
        fire, plan = self.plan  # type: ignore[misc]
        self.plan = None
        self.busy = False
        self.vslot = fire + 1
        self.t_idle = now + dcf.difs
        done: list[tuple[_Station, int, bool]] = []
        for st, ppdu, ack, data, k, lost in plan:
            rid = st.rid
            ok = lost < k
            heard = ack if ok else 0.0
            # the node sends its payload PPDU and hears the ACK; for a result it hears the PPDU
            # and sends the ACK
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
                if st.left <= _OK_END:
                    st.end_col[rid] = now
                    done.append((st, rid, True))
                    self._next(st, now)
            else:
                st.retries += 1
                if st.retries > dcf.retry_limit:
                    rec.status[rid] = _DROPPED
                    rec.finished_s[rid] = now
                    self.drops += 1
                    done.append((st, rid, False))
                    self._next(st, now)
                elif st.stage < dcf.stages:
                    st.stage += 1
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
    lv = [Level(warmup, duration) for _ in range(4)]
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

    cell = CsmaCell(env, rec, dcf, [rate] * n, rate, np.random.default_rng(seed), on_delivered,
                    lambda rid: None, *lv, on_dropped=on_dropped)
    for i in range(n):
        new(i)
    env.run(until=duration)
    return {"throughput": delivered[0] / (duration - warmup),
            "collision_fraction": cell.collisions / max(1, cell.exchanges),
            "exchanges": float(cell.exchanges), "drops": float(cell.drops)}
