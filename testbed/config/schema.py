"""The scenario: one validated, frozen description of a fleet, a link and a server.

Built from a mapping by :mod:`testbed.config.load`. Unknown keys, wrong types and impossible values raise
:class:`~testbed.errors.ConfigError` naming the dotted field path, the value and what is allowed.

Pure: validation opens no file and imports neither torch nor the model side. Fields that name a
file (trace ``file``, empirical ``file``, NestQuant ``modes``, device profiles, checkpoints, dataset
paths) keep the name as written; :func:`testbed.config.resolve.resolve` reads them. Containers are
immutable (tuples and :class:`~testbed.config.frozen.FrozenDict`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from testbed.config.frozen import freeze
from testbed.config.modes import NestQuantPolicy
from testbed.dists import Deterministic, Dist, EmpiricalFile, Uniform, parse_dist
from testbed.errors import ConfigError
from testbed.units import parse_datarate, parse_duration, parse_rate, parse_size

__all__ = [
    "POLICY_KEYS",
    "Arrivals",
    "AssignmentSpec",
    "BackhaulSpec",
    "Batching",
    "CellOutageSpec",
    "CellSpec",
    "CsmaSpec",
    "DatasetSpec",
    "DownlinkSpec",
    "EdgeServerSpec",
    "FallbackSpec",
    "FleetGroup",
    "GilbertElliottSpec",
    "LinkSpec",
    "ModelSpec",
    "NestQuantSpec",
    "OutageSpec",
    "PacketTrace",
    "PathLossSpec",
    "PlacementSpec",
    "QueueSpec",
    "RadioSpec",
    "RateBand",
    "Scenario",
    "ServerSpec",
    "ServiceSpec",
    "Workload",
]

POLICY_KEYS = ("low_battery", "resume_battery", "queue_high", "queue_low")


def _dist_validator(kind: str) -> BeforeValidator:
    def check(value: Any) -> Dist:
        if isinstance(value, Dist):
            return value
        return parse_dist(value, kind)
    return BeforeValidator(check)


def _jitter(value: Any) -> Dist | None:
    """A duration j: uniform in [-j, +j]; a ``{dist: ...}`` mapping: the delay added."""
    if value is None or isinstance(value, Dist):
        return value
    if isinstance(value, Mapping):
        return parse_dist(value, "duration")
    j = parse_duration(value)
    if not math.isfinite(j) or j < 0:
        raise ValueError("jitter must be >= 0")
    return Uniform(-j, j) if j > 0 else Deterministic(0.0)


def _positive(parse: Any, what: str, allow_zero: bool = False) -> BeforeValidator:
    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be {what}")
        try:
            v = float(parse(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be {what} ({exc})") from None
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"must be {what}{' >= 0' if allow_zero else ' > 0'}")
        return v
    return BeforeValidator(check)


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty name or path")
    return value


DurationDist = Annotated[Dist, _dist_validator("duration")]
SizeDist = Annotated[Dist, _dist_validator("size")]
PositiveSeconds = Annotated[float, _positive(parse_duration, "a duration like '20 ms'")]
NonNegSeconds = Annotated[float, _positive(parse_duration, "a duration like '20 ms'", allow_zero=True)]
DataRate = Annotated[float, _positive(parse_datarate, "a data rate like '5 MB/s' or '40 Mbit/s'")]
EventRate = Annotated[float, _positive(parse_rate, "a rate like '2/s'")]
Name = Annotated[str, AfterValidator(_name)]
FrozenParams = Annotated[Mapping[str, Any], AfterValidator(freeze)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)


class Arrivals(_Frozen):
    """How a node's frames arrive.

    ``periodic``: every ``1/rate`` with additive ``jitter`` (a duration j means uniform in
    [-j, +j], or a distribution of the delay added) and a random phase in [0, period).
    ``poisson``: exponential inter-arrivals. ``trace``: timestamps (seconds) from a file, one per
    line or a CSV column ``time_s`` with an optional ``node`` column (index within the group).
    """

    kind: Literal["periodic", "poisson", "trace"]
    rate: EventRate | None = None
    jitter: Annotated[Dist | None, BeforeValidator(_jitter)] = None
    random_phase: bool = True
    file: Name | None = None
    trace_times: tuple[float, ...] = ()
    trace_nodes: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Arrivals:
        if self.kind in ("periodic", "poisson") and self.rate is None:
            raise ValueError(f"{self.kind} arrivals need 'rate' (like '2/s')")
        if self.kind == "trace" and not self.trace_times and self.file is None:
            raise ValueError("trace arrivals need 'file'")
        return self


class QueueSpec(_Frozen):
    """A node's local frame queue: ``capacity`` waiting frames (None = unbounded)."""

    capacity: Annotated[int, Field(strict=True, ge=0)] | None = None
    policy: Literal["drop_newest", "drop_oldest"] = "drop_newest"


class NestQuantSpec(_Frozen):
    """NestQuant mode switching on the node (see :mod:`testbed.sim.nestquant`).

    ``modes`` is the ``.modes.json`` written by ``testbed train nestquant``; ``policy`` the switching
    thresholds; ``battery_j`` the battery capacity in joules (None: only the queue length matters);
    ``paging_rate`` how fast the low-order weight bits are paged in or out.
    """

    modes: Name
    policy: Annotated[Mapping[str, float], AfterValidator(freeze)] = freeze({})
    battery_j: Annotated[float, Field(gt=0)] | None = None
    initial_battery: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    paging_rate: DataRate = 50e6

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: Mapping[str, float]) -> Mapping[str, float]:
        unknown = set(value) - set(POLICY_KEYS)
        if unknown:
            raise ValueError(f"policy keys must be {', '.join(POLICY_KEYS)} (got {sorted(unknown)})")
        NestQuantPolicy(**cast(Any, value))
        return value


Metres = Annotated[float, Field(allow_inf_nan=False)]


class PlacementSpec(_Frozen):
    """Where a group's nodes are (metres): ``positions`` (one ``[x, y]`` per node) or ``area`` (``[[x0, y0],
    [x1, y1]]``: uniform in that rectangle, from the group's own stream). Each node then joins the cell it
    hears best (the group's ``cell`` if it names one) at the rate ``radio.rates`` gives its distance."""

    positions: tuple[tuple[Metres, Metres], ...] = ()
    area: tuple[tuple[Metres, Metres], tuple[Metres, Metres]] | None = None

    @model_validator(mode="after")
    def _check(self) -> PlacementSpec:
        if bool(self.positions) == (self.area is not None):
            raise ValueError("give either positions (one [x, y] per node) or area ([[x0, y0], [x1, y1]])")
        if self.area is not None and not (self.area[0][0] <= self.area[1][0] and self.area[0][1] <= self.area[1][1]):
            raise ValueError("area is [[x0, y0], [x1, y1]] with x0 <= x1 and y0 <= y1")
        return self


class DatasetSpec(_Frozen):
    """The images frames are drawn from: ``kind`` a registered dataset (``samples``, ``photos``,
    ``digits``, ``imagefolder``), ``path`` its folder, ``limit`` how many images (``photos``: frames),
    ``seed`` the variations ``photos`` draws, ``corruption`` the camera corruption applied to each frame
    before the head: ``{name: gaussian_noise, severity: 3}``, each a value or a list drawn from per frame
    (the ImageNet-C families; checked by the model side, ``testbed.split.data.corrupt``)."""

    kind: str = "photos"
    path: str | None = None
    limit: Annotated[int, Field(strict=True, ge=1)] | None = None
    seed: Annotated[int, Field(strict=True, ge=0)] = 0
    corruption: FrozenParams | None = None


class AdaptivePolicySpec(_Frozen):
    """How an adaptive group chooses its configuration per frame (:mod:`testbed.core.adaptive`): from
    ``signal`` (``queue``: frames waiting on the node; ``uplink_backlog``: bytes the node handed to the
    uplink that are not yet delivered; ``rtt``: an EWMA, weight ``alpha``, of its answered frames' round
    trips in seconds) it steps to the next smaller configuration when the signal is at least ``up`` and
    back to the next larger when it is at most ``down`` and ``hold_s`` seconds have passed since its last
    step, plus a uniform random extra of up to ``hold_jitter_s`` drawn per step (it backs off at once,
    one step per frame)."""

    signal: Literal["queue", "uplink_backlog", "rtt"] = "uplink_backlog"
    up: Annotated[float, Field(gt=0)]
    down: Annotated[float, Field(ge=0)]
    hold_s: NonNegSeconds = 0.0
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.2
    hold_jitter_s: NonNegSeconds = 0.0

    @model_validator(mode="after")
    def _check(self) -> AdaptivePolicySpec:
        if not self.down < self.up:
            raise ValueError(f"down ({self.down:g}) must be below up ({self.up:g}) (the hysteresis band)")
        return self


class AdaptiveConfig(_Frozen):
    """One configuration of an adaptive group: its ``model`` keys merged over the group's model (else the
    scenario's) and its ``codec`` (None: the group's)."""

    model: ModelSpec | None = None
    codec: tuple[FrozenParams, ...] | None = None


class AdaptiveSpec(_Frozen):
    """A group that chooses its split configuration per frame: ``configs`` from the most accurate (largest
    payload) to the smallest, and the ``policy`` that steps between them."""

    configs: Annotated[tuple[AdaptiveConfig, ...], Field(min_length=2)]
    policy: AdaptivePolicySpec


class FleetGroup(_Frozen):
    """A group of identical nodes. ``model`` and ``codec`` (a heterogeneous fleet: e.g. two camera
    generations) are the group's own split model and codec chain; the group's ``model`` keys are merged
    over the scenario's (``model: {split: input}`` changes only the split); None: the scenario's."""

    name: str = ""
    count: Annotated[int, Field(strict=True, ge=1)]  # memory: checked by testbed.run.prepare
    device: Name
    arrivals: Arrivals
    queue: QueueSpec = QueueSpec()
    head: DurationDist | None = None
    encode: DurationDist | None = None
    payload: SizeDist | None = None
    datarate: DataRate | None = None
    nestquant: NestQuantSpec | None = None
    cell: Name | None = None  # topology: the cell (``cells[].name``) the group's nodes are in
    placement: PlacementSpec | None = None  # topology: the nodes' positions (cell and rate from radio)
    rate_trace: RateTrace | None = None  # each node's uplink rate over time (shared_fifo; see RateTrace)
    dataset: DatasetSpec | None = None  # the group's own frames (e.g. a corruption); None: the scenario's
    model: ModelSpec | None = None  # the group's own model and split (merged over the scenario's); None: its
    codec: tuple[FrozenParams, ...] | None = None  # the group's own codec chain ([]: none); None: the scenario's
    adaptive: AdaptiveSpec | None = None  # configurations chosen per frame (testbed.core.adaptive); None: one


class PacketTrace(_Frozen):
    """A packet-delivery trace in the Mahimahi format: one millisecond timestamp per line, each an
    opportunity to deliver one ``mtu``-byte packet; the trace loops (every last timestamp). A ``file``
    (read when the scenario is resolved) or inline ``ms``. Transmissions in that direction then take the
    trace's opportunities, whatever the link's and groups' ``datarate`` (``shared_fifo`` only)."""

    file: str | None = None
    ms: tuple[Annotated[int, Field(strict=True, ge=0)], ...] = ()
    mtu: Annotated[float, _positive(parse_size, "a size like '1500 B'")] = 1500.0

    @model_validator(mode="after")
    def _check(self) -> PacketTrace:
        if self.file is None and not self.ms:
            raise ValueError("a packet trace needs a file (Mahimahi: one millisecond per line) or ms (a list)")
        if self.ms and (any(b < a for a, b in zip(self.ms, self.ms[1:])) or self.ms[-1] <= 0):
            raise ValueError("ms must not decrease and must end above 0")
        return self


class DownlinkSpec(_Frozen):
    datarate: DataRate | None = None
    latency: DurationDist | None = None
    packet_trace: PacketTrace | None = None  # the downlink's Mahimahi trace (shared_fifo)


class GilbertElliottSpec(_Frozen):
    """Bursty frame errors on each station's link (the Gilbert-Elliott two-state channel, per MPDU): lost with
    ``error_good`` in the good state and ``error_bad`` in the bad one; after each MPDU the state turns bad
    with ``p_good_bad``, good again with ``p_bad_good`` (a bad spell lasts ``1 / p_bad_good`` MPDUs on
    average). Long-run loss: ``pi_bad * error_bad + (1 - pi_bad) * error_good``, ``pi_bad = p_good_bad /
    (p_good_bad + p_bad_good)``."""

    p_good_bad: Annotated[float, Field(gt=0.0, le=1.0)]
    p_bad_good: Annotated[float, Field(gt=0.0, le=1.0)]
    error_good: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    error_bad: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


class CsmaSpec(_Frozen):
    """802.11 DCF parameters for ``link.model: csma`` (see :mod:`testbed.sim.links.csma` and
    :mod:`testbed.sim.links.phy` for the sources).

    ``standard`` picks the PHY preamble and aggregation (802.11a: 20 us, no A-MPDU; 802.11n: 36 us,
    A-MPDU of 64; 802.11ac: 40 us); the rest default to IEEE 802.11-2016 values for 5 GHz OFDM.
    Powers are the node radio's transmit, receive and idle-listening draw in watts.
    """

    standard: Literal["802.11a", "802.11n", "802.11ac"] = "802.11n"
    slot: PositiveSeconds = 9e-6
    sifs: PositiveSeconds = 16e-6
    preamble: PositiveSeconds | None = None
    cw_min: Annotated[int, Field(strict=True, ge=0, le=65535)] = 15
    cw_max: Annotated[int, Field(strict=True, ge=0, le=65535)] = 1023
    retry_limit: Annotated[int, Field(strict=True, ge=0, le=255)] = 7
    basic_rate: DataRate = 3e6
    mtu: Annotated[float, _positive(parse_size, "a size like '1500 B'")] = 1500.0
    max_aggregate: Annotated[int, Field(strict=True, ge=1, le=256)] | None = None
    frame_error_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    gilbert_elliott: GilbertElliottSpec | None = None  # bursty frame errors instead of frame_error_rate
    tx_power: Annotated[float, Field(ge=0.0)] = 1.28
    rx_power: Annotated[float, Field(ge=0.0)] = 0.94
    idle_power: Annotated[float, Field(ge=0.0)] = 0.82

    @field_validator("cw_min", "cw_max")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if (value + 1) & value:
            raise ValueError("must be 2^k - 1 (e.g. 15, 31, 1023)")
        return value

    @field_validator("cw_max")
    @classmethod
    def _above_min(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("cw_min", 0):
            raise ValueError(f"must be >= cw_min ({info.data.get('cw_min')})")
        return value

    @model_validator(mode="after")
    def _one_error_model(self) -> CsmaSpec:
        if self.gilbert_elliott is not None and self.frame_error_rate > 0:
            raise ValueError("give either frame_error_rate (independent losses) or gilbert_elliott (bursts), not both")
        return self

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: float) -> float:
        if value != int(value) or not 100 <= value <= 7935:
            raise ValueError("must be a whole number of bytes in [100 B, 7935 B] (max A-MSDU)")
        return value


class RateTrace(_Frozen):
    """The cell's data rate over time: ``rate`` from ``time_s`` until the next time (the first time must
    be 0; the last rate holds to the end). Inline (``time_s: [0, 60]``, ``rate: [5 MB/s, 1 MB/s]``) or
    a CSV ``file`` with columns ``time_s`` and ``rate``, read when the scenario is resolved. Every node's
    rate (and the downlink's) is scaled by ``rate(t) / link.datarate`` while it transmits."""

    file: str | None = None
    time_s: tuple[Annotated[float, Field(ge=0.0, allow_inf_nan=False)], ...] = ()
    rate: tuple[DataRate, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RateTrace:
        if self.file is None and not self.time_s:
            raise ValueError("a rate trace needs a file (CSV with time_s and rate) or time_s and rate lists")
        if self.time_s:
            if len(self.time_s) != len(self.rate):
                raise ValueError(f"time_s and rate must have the same length ({len(self.time_s)} and "
                                 f"{len(self.rate)})")
            if self.time_s[0] != 0.0 or any(b <= a for a, b in zip(self.time_s, self.time_s[1:])):
                raise ValueError("time_s must start at 0 and increase strictly")
        return self


class LinkSpec(_Frozen):
    """The shared wireless uplink (and a downlink for results).

    ``shared_fifo``: one transmission on the air at a time at the full rate.
    ``fair_share``: processor sharing; active transmissions split the rate equally.
    ``csma``: an 802.11 DCF cell (section ``csma``); ``datarate`` (and a group's ``datarate``) is
    then the PHY rate, and the access point contends for the results on the same air.
    ``model`` names a registered link model (:data:`testbed.sim.links.LINKS`); the name is checked
    against the registry when the scenario is prepared (the schema sits below the simulator).
    """

    model: Annotated[str, Field(min_length=1, max_length=64)] = "shared_fifo"
    datarate: DataRate
    latency: DurationDist = Deterministic(0.0)
    downlink: DownlinkSpec = DownlinkSpec()
    csma: CsmaSpec = CsmaSpec()
    rate_trace: RateTrace | None = None
    packet_trace: PacketTrace | None = None  # the uplink's Mahimahi trace (shared_fifo)

    @model_validator(mode="after")
    def _one_trace(self) -> LinkSpec:
        if self.rate_trace is not None and self.packet_trace is not None:
            raise ValueError("give either rate_trace or packet_trace, not both")
        return self

    @property
    def downlink_datarate(self) -> float:
        return self.downlink.datarate if self.downlink.datarate is not None else self.datarate

    @property
    def downlink_latency(self) -> Dist:
        return self.downlink.latency if self.downlink.latency is not None else self.latency


class Batching(_Frozen):
    """Dynamic batching: an incomplete batch waits until full or until its oldest request has
    waited ``max_delay``; with ``max_delay: 0`` a free GPU takes whatever is queued."""

    max_batch: Annotated[int, Field(strict=True, ge=1, le=1 << 20)] = 1
    max_delay: NonNegSeconds = 0.0


class ServiceSpec(_Frozen):
    """Batch service time as a function of batch size.

    ``table``: batch size -> duration, linearly interpolated (and extrapolated from the last two
    points). ``per_batch`` + ``per_item``: affine. ``dist``: a distribution per batch, whatever its
    size (may be given as a plain duration or ``{dist: ...}``).
    """

    table: Annotated[Mapping[int, NonNegSeconds], AfterValidator(freeze)] | None = None
    per_batch: NonNegSeconds | None = None
    per_item: NonNegSeconds | None = None
    dist: DurationDist | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ServiceSpec:
        forms = [self.table is not None, self.per_batch is not None or self.per_item is not None,
                 self.dist is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of 'table', 'per_batch'/'per_item', or 'dist'")
        if self.table is not None and (not self.table or min(self.table) < 1):
            raise ValueError("table needs batch sizes >= 1")
        return self


def _service_before(value: Any) -> Any:
    if value is None or (isinstance(value, (ServiceSpec, Mapping)) and not (
            isinstance(value, Mapping) and "dist" in value and isinstance(value["dist"], str))):
        return value
    return {"dist": value}


class ServerSpec(_Frozen):
    device: Name
    gpus: Annotated[int, Field(strict=True, ge=1, le=4096)] = 1
    batching: Batching = Batching()
    service: Annotated[ServiceSpec | None, BeforeValidator(_service_before)] = None
    decode: DurationDist = Deterministic(0.0)
    queue_capacity: Annotated[int, Field(strict=True, ge=1)] | None = None
    timeout: PositiveSeconds | None = None


class Workload(_Frozen):
    """Per-frame payload and result sizes used when no model supplies them."""

    payload: SizeDist = Deterministic(25_000.0)
    result: SizeDist = Deterministic(64.0)


class ModelSpec(_Frozen):
    """The split model: ``weights`` is ``pretrained`` (the default: the model's ImageNet weights, packaged
    or torchvision's), ``random`` (seeded by ``seed``; accuracy and compressed sizes then mean nothing),
    a torchvision weights name or a checkpoint path. ``spread: true`` charges the profile's measured spread (lognormal) instead of
    its median. ``head`` is a trained replacement head (a checkpoint of ``testbed train groupnl``) the
    nodes run instead of the model's own up to ``split``."""

    name: str
    weights: str = "pretrained"
    split: str
    seed: Annotated[int, Field(strict=True, ge=0)] = 0
    spread: bool = False
    head: str | None = None


class CellSpec(LinkSpec):
    """One access point's cell in a topology: a named link (any link model, its own data rate,
    latency, downlink, csma section, rate trace) and, to place nodes by position, its access point's
    ``position`` (``[x, y]`` in metres)."""

    name: Name
    position: tuple[Metres, Metres] | None = None
    outages: CellOutageSpec | None = None


class PathLossSpec(_Frozen):
    """Log-distance path loss: received power ``tx_power_dbm - (loss_at_1m_db + 10 exponent log10(d / 1 m))``."""

    tx_power_dbm: Annotated[float, Field(ge=-50.0, le=60.0)] = 20.0
    loss_at_1m_db: Annotated[float, Field(ge=0.0, le=200.0)] = 40.0
    exponent: Annotated[float, Field(gt=0.0, le=10.0)] = 3.0


class RateBand(_Frozen):
    """One row of ``radio.rates``: ``rate`` for a received power of at least ``min_rssi_dbm``, or for a
    distance of at most ``max_distance_m``."""

    rate: DataRate
    min_rssi_dbm: Annotated[float, Field(ge=-200.0, le=100.0)] | None = None
    max_distance_m: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _check(self) -> RateBand:
        if (self.min_rssi_dbm is None) == (self.max_distance_m is None):
            raise ValueError("give either min_rssi_dbm or max_distance_m")
        return self


class RadioSpec(_Frozen):
    """How placed nodes get their rate (``fleet[].placement``): ``rates``, a table of received-power bands
    (best first, with ``path_loss``) or of distance bands (nearest first), e.g. a chipset's MCS sensitivity
    table; a node no band covers is out of range (an error)."""

    path_loss: PathLossSpec | None = None
    rates: Annotated[tuple[RateBand, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> RadioSpec:
        rssi = [b.min_rssi_dbm for b in self.rates if b.min_rssi_dbm is not None]
        dist = [b.max_distance_m for b in self.rates if b.max_distance_m is not None]
        if rssi and dist:
            raise ValueError("rates: use min_rssi_dbm bands or max_distance_m bands, not both")
        if rssi and self.path_loss is None:
            raise ValueError("min_rssi_dbm bands need path_loss (e.g. {tx_power_dbm: 20, exponent: 3})")
        if any(b >= a for a, b in itertools.pairwise(rssi)) or any(b <= a for a, b in itertools.pairwise(dist)):
            raise ValueError("rates go from the best band down: min_rssi_dbm decreasing, max_distance_m increasing")
        return self


class _OutageTimes(_Frozen):
    """When something is down: ``at``, scripted ``[down, up]`` pairs of times (``[[30 s, 45 s]]``), or ``mttf``
    and ``mttr``: random outages, exponential times to failure and to repair (its own stream)."""

    at: tuple[tuple[NonNegSeconds, NonNegSeconds], ...] = ()
    mttf: PositiveSeconds | None = None
    mttr: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _times(self) -> _OutageTimes:
        random = self.mttf is not None or self.mttr is not None
        if random and (self.mttf is None or self.mttr is None):
            raise ValueError("random outages need both 'mttf' and 'mttr' (like '10 min' and '30 s')")
        if random == bool(self.at):
            raise ValueError("give either 'at' (scripted [down, up] times) or 'mttf' and 'mttr', one of them")
        last = -1.0
        for down, up in self.at:
            if not last < down < up:
                raise ValueError(f"each outage [down, up] must have down < up and start after the previous one "
                                 f"ends (got [{down:g} s, {up:g} s])")
            last = up
        return self


class OutageSpec(_OutageTimes):
    """When a server is down (``at`` or ``mttf``/``mttr``, as :class:`_OutageTimes`), and what becomes of its
    requests. While down the server takes no request: the assignment policy picks among the servers that
    are up. When it goes down, the requests queued or on its GPUs, and those reaching it while it is down,
    are ``lost`` (status ``server_failed``) or, with ``fate: retry``, sent again after ``retry_after`` (the
    failure's detection time) to a server that is up, at most ``max_retries`` times (then lost). A request
    that finds no server up is treated the same way.
    """

    fate: Literal["lost", "retry"] = "lost"
    retry_after: NonNegSeconds = 0.0
    max_retries: Annotated[int, Field(strict=True, ge=0, le=100)] = 3


class CellOutageSpec(_OutageTimes):
    """When a cell's access point is down (``at`` or ``mttf``/``mttr``): nothing crosses its link (the
    transmission on the air is cut and sent again from its first bit when the cell is back). ``fate:
    wait``: what is queued, and what nodes and servers send meanwhile, waits for the cell; ``lost``: it is
    lost (status ``cell_failed``). ``shared_fifo`` cells only."""

    fate: Literal["wait", "lost"] = "wait"


class EdgeServerSpec(ServerSpec):
    """One edge server in a topology: a named server spec (device, GPUs, batching, service...) and its
    optional ``outages``."""

    name: Name
    outages: OutageSpec | None = None


class BackhaulSpec(_Frozen):
    """The wired backhaul between the cells and the servers: a payload crosses it after the cell's
    uplink (and a result before the cell's downlink), one at a time at ``datarate`` then ``latency``.
    ``shared: per_cell``: one backhaul line per cell (each direction); ``per_server``: one per server."""

    datarate: DataRate
    latency: DurationDist = Deterministic(0.0)
    shared: Literal["per_cell", "per_server"] = "per_cell"


class FallbackSpec(_Frozen):
    """Local fallback: a node runs the whole model itself (its CPU for ``local`` instead of head and
    encode; nothing is sent, the answer is ready on the node, ``server`` -1) when the least-loaded
    server it may use has at least ``queue`` outstanding requests, or when the mean round-trip time
    (payload handed to the radio to result back) of its offloaded requests that returned in the last
    ``rtt_window`` exceeds ``rtt``."""

    local: DurationDist
    queue: Annotated[int, Field(strict=True, ge=1)] | None = None
    rtt: PositiveSeconds | None = None
    rtt_window: PositiveSeconds = 1.0

    @model_validator(mode="after")
    def _check(self) -> FallbackSpec:
        if self.queue is None and self.rtt is None:
            raise ValueError("a fallback needs a threshold: 'queue' (outstanding requests) or 'rtt' (like '200 ms')")
        return self


class AssignmentSpec(_Frozen):
    """Which server gets a request, decided when its payload has left the cell. ``policy`` names a
    registered assignment policy (:data:`testbed.core.assign.ASSIGNMENTS`: ``static``, ``random``,
    ``round_robin``, ``jsq``, ``power_of_two``); ``static`` maps a fleet group's or a cell's name to a
    server name (the group's entry wins; ``static`` policy only); ``fallback`` the optional local
    fallback."""

    policy: Annotated[str, Field(min_length=1, max_length=64)] = "static"
    static: Annotated[Mapping[str, str], AfterValidator(freeze)] = freeze({})
    fallback: FallbackSpec | None = None


def _named(items: Any, field: str) -> None:
    names = [getattr(x, "name", None) for x in items]
    dup = next((i for i, n in enumerate(names) if names.index(n) != i), None)
    if dup is not None:
        raise ConfigError(f"{field}.{dup}.name", names[dup], f"a name no other entry of {field} has")


_PLACEHOLDER_LINK = LinkSpec(datarate=1.0)
_PLACEHOLDER_SERVER = ServerSpec(device="-", service=ServiceSpec(dist=Deterministic(0.0)))


def _first_as(items: Any, spec: type[LinkSpec] | type[ServerSpec], placeholder: BaseModel) -> Any:
    """``link``/``server`` from the first cell/server (a placeholder when it is itself invalid: its error
    is then reported once, at ``cells.0``/``servers.0``)."""
    first = items[0]
    if isinstance(first, spec):
        return spec(**{f: getattr(first, f) for f in spec.model_fields})
    if isinstance(first, Mapping):
        try:
            return spec.model_validate({k: v for k, v in first.items() if k in spec.model_fields})
        except (ValueError, TypeError, ConfigError):
            return placeholder
    return placeholder


def _adaptive_models(group: Any, base: Mapping[str, Any]) -> Any:
    """An adaptive group's configurations' ``model`` keys merged over the scenario's model."""
    if not isinstance(group, Mapping) or not isinstance(group.get("adaptive"), Mapping):
        return group
    adaptive = group["adaptive"]
    configs = adaptive.get("configs")
    if not isinstance(configs, Sequence) or isinstance(configs, str):
        return group
    merged = [{**c, "model": {**base, **c["model"]}} if isinstance(c, Mapping) and isinstance(c.get("model"), Mapping)
              else c for c in configs]
    return {**group, "adaptive": {**adaptive, "configs": merged}}


class Scenario(_Frozen):
    """A complete, validated scenario. Times in seconds, sizes in bytes, rates in bytes/s."""

    name: str = "scenario"
    seed: Annotated[int, Field(strict=True, ge=0)] = 0
    duration: PositiveSeconds
    warmup: NonNegSeconds = 0.0
    drain: NonNegSeconds | None = None
    fleet: Annotated[tuple[FleetGroup, ...], Field(min_length=1)]
    link: LinkSpec
    server: ServerSpec
    workload: Workload = Workload()
    model: ModelSpec | None = None
    codec: tuple[FrozenParams, ...] = ()
    dataset: DatasetSpec | None = None
    sweep: Annotated[Mapping[str, Sequence[Any]], AfterValidator(freeze)] = freeze({})
    replications: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 1
    cells: Annotated[tuple[CellSpec, ...], Field(min_length=1)] = ()
    servers: Annotated[tuple[EdgeServerSpec, ...], Field(min_length=1)] = ()
    backhaul: BackhaulSpec | None = None
    assignment: AssignmentSpec | None = None
    radio: RadioSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _topology_defaults(cls, data: Any) -> Any:
        """With ``cells`` (``servers``), ``link`` (``server``) is the first one and must not be given."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for many, one, spec, placeholder in (("cells", "link", LinkSpec, _PLACEHOLDER_LINK),
                                             ("servers", "server", ServerSpec, _PLACEHOLDER_SERVER)):
            if many not in out:
                continue
            if one in out:
                raise ConfigError(one, f"a {one} beside {many}", f"either '{one}' (one {one}) or '{many}' "
                                  "(a topology), not both")
            items = out[many]
            usable = isinstance(items, Sequence) and not isinstance(items, str) and items
            # a placeholder when the list itself is wrong: its error is then reported once, at cells/servers
            out[one] = _first_as(items, spec, placeholder) if usable else placeholder
        return out

    @model_validator(mode="before")
    @classmethod
    def _group_models(cls, data: Any) -> Any:
        """A group's ``model`` keys are merged over the scenario's (``{split: input}``: another split)."""
        if not isinstance(data, Mapping):
            return data
        base, fleet = data.get("model"), data.get("fleet")
        if not isinstance(base, Mapping) or not isinstance(fleet, Sequence) or isinstance(fleet, str):
            return data
        groups = [{**g, "model": {**base, **g["model"]}} if isinstance(g, Mapping) and isinstance(g.get("model"), Mapping)
                  else g for g in fleet]
        return {**data, "fleet": [_adaptive_models(g, base) for g in groups]}

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        self._check_topology()
        self._check_adaptive()
        if self.model is None:
            for g, group in enumerate(self.fleet):
                for key in ("model", "codec"):
                    if getattr(group, key) is not None:
                        raise ConfigError(f"fleet.{g}.{key}", f"a group {key}", "a scenario with a model section "
                                          "(the default every group's model and codec are taken from)")
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({self.warmup} s) must be shorter than duration ({self.duration} s)")
        for g, group in enumerate(self.fleet):
            jitter = group.arrivals.jitter
            if jitter is not None and not isinstance(jitter, EmpiricalFile) and not jitter.mean() <= self.duration:
                raise ConfigError(f"fleet.{g}.arrivals.jitter", f"a mean delay of {jitter.mean():.6g} s",
                                  f"a jitter no longer than the run's duration ({self.duration:g} s)")
        if self.server.service is None and self.model is None:
            raise ValueError("server.service is required when the scenario has no model "
                             "(e.g. service: {table: {1: 5 ms, 32: 20 ms}})")
        return self

    def _check_topology(self) -> None:
        _named(self.cells, "cells")
        _named(self.servers, "servers")
        cells = {c.name for c in self.cells}
        for g, group in enumerate(self.fleet):
            if group.cell is not None and group.cell not in cells:
                raise ConfigError(f"fleet.{g}.cell", group.cell, f"a cell named in cells ({', '.join(sorted(cells))})"
                                  if cells else "no cell: the scenario has no 'cells' (one link)")
            self._check_placement(g, group)
        if self.model is None:
            for s, srv in enumerate(self.servers):
                if srv.service is None:
                    raise ConfigError(f"servers.{s}.service", None, "a service time (the scenario has no model)")
        a = self.assignment
        if a is None:
            return
        servers = {s.name for s in self.servers}
        keys = cells | {g.name for g in self.fleet if g.name}
        for key, server in a.static.items():
            if key not in keys:
                raise ConfigError(f"assignment.static.{key}", key, f"a fleet group or cell name ({', '.join(sorted(keys))})")
            if server not in servers:
                raise ConfigError(f"assignment.static.{key}", server,
                                  f"a server named in servers ({', '.join(sorted(servers)) or 'none: no servers list'})")
        if a.static and a.policy != "static":
            raise ConfigError("assignment.static", dict(a.static), f"no static map with policy {a.policy!r}")
        if a.policy == "static" and len(self.servers) > 1:
            for g, group in enumerate(self.fleet):
                if group.name not in a.static and group.cell not in a.static:
                    raise ConfigError(f"fleet.{g}", group.name or f"group {g}",
                                      "a server for every group under assignment.policy static (assignment.static: "
                                      "{group or cell name: server name})")

    def _check_placement(self, g: int, group: FleetGroup) -> None:
        p = group.placement
        if p is None:
            return
        field = f"fleet.{g}.placement"
        if self.radio is None:
            raise ConfigError(field, "a placement", "a scenario with radio: {rates: [...]} (the rate of a distance)")
        unplaced = [c.name for c in self.cells if c.position is None]
        if not self.cells or unplaced:
            raise ConfigError(field, "a placement", "cells with a position each ([x, y] in metres; "
                              f"{'no cells' if not self.cells else 'missing: ' + ', '.join(unplaced)})")
        if p.positions and len(p.positions) != group.count:
            raise ConfigError(f"{field}.positions", f"{len(p.positions)} positions",
                              f"one position per node ({group.count})")
        if group.datarate is not None:
            raise ConfigError(f"fleet.{g}.datarate", group.datarate, "no datarate with a placement (radio.rates "
                              "gives each node's rate)")

    @property
    def topology(self) -> bool:
        """True when the scenario names cells, servers, a backhaul or an assignment (several cells or
        servers, or a policy; False: the one link and one server of ``link`` and ``server``)."""
        return bool(self.cells or self.servers or self.backhaul is not None or self.assignment is not None
                    or self.radio is not None)

    @property
    def cell_specs(self) -> tuple[LinkSpec, ...]:
        """Every cell's link (``link`` alone when the scenario has no ``cells``)."""
        return self.cells or (self.link,)

    def _check_adaptive(self) -> None:
        for g, group in enumerate(self.fleet):
            if group.adaptive is None:
                continue
            field = f"fleet.{g}.adaptive"
            if self.model is None:
                raise ConfigError(field, "an adaptive group", "a scenario with a model section (each "
                                  "configuration's payloads and agreement come from the pipeline)")
            if group.nestquant is not None:
                raise ConfigError(field, "an adaptive group", "a group without nestquant (one per-frame controller)")
            if self.topology:
                raise ConfigError(field, "an adaptive group", "a scenario without cells, servers, backhaul, "
                                  "assignment or radio (one link and one server)")
            if group.adaptive.policy.signal == "uplink_backlog" and self.link.model == "csma":
                raise ConfigError(f"{field}.policy.signal", "uplink_backlog", "queue or rtt on a csma link (frames "
                                  "the MAC drops are not reported back to the node's backlog)")
            if group.model is not None or group.codec is not None:
                raise ConfigError(f"fleet.{g}.model", "a group model or codec with adaptive", "the "
                                  "configurations' own model and codec in adaptive.configs")
            keys = [json.dumps([m.model_dump(mode="json"), json.loads(json.dumps(list(c)))], sort_keys=True)
                    for m, c in self.group_variants(g)]
            if len(set(keys)) != len(keys):
                raise ConfigError(f"{field}.configs", "a configuration listed twice", "distinct configurations")
            if any(m.split == "none" for m, _ in self.group_variants(g)):
                raise ConfigError(f"{field}.configs", "split none", "configurations that send a payload")

    def group_variants(self, g: int) -> tuple[tuple[ModelSpec, tuple[FrozenParams, ...]], ...]:
        """Group ``g``'s configurations (model, codec): its adaptive ones in order, else its one."""
        model, codec = self.group_model(g), self.group_codec(g)
        assert model is not None
        spec = self.fleet[g].adaptive
        if spec is None:
            return ((model, codec),)
        return tuple((c.model if c.model is not None else model, c.codec if c.codec is not None else codec)
                     for c in spec.configs)

    def group_model(self, g: int) -> ModelSpec | None:
        """Group ``g``'s model: its own (``fleet[g].model``) else the scenario's."""
        model = self.fleet[g].model
        return model if model is not None else self.model

    def group_codec(self, g: int) -> tuple[FrozenParams, ...]:
        """Group ``g``'s codec chain: its own (``fleet[g].codec``) else the scenario's."""
        codec = self.fleet[g].codec
        return codec if codec is not None else self.codec

    @property
    def server_specs(self) -> tuple[ServerSpec, ...]:
        """Every server (``server`` alone when the scenario has no ``servers``)."""
        return self.servers or (self.server,)

    @property
    def cell_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cells) or ("cell",)

    @property
    def server_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.servers) or ("server",)

    def cell_of(self, group: int) -> int:
        """Index of the cell fleet group ``group`` is in (the first cell when it names none)."""
        name = self.fleet[group].cell
        return 0 if name is None else self.cell_names.index(name)

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.fleet)

    @property
    def drain_s(self) -> float:
        """Simulated time after ``duration`` allowed for in-flight requests to finish."""
        return self.drain if self.drain is not None else self.duration
