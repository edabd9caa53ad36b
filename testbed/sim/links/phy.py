"""802.11 PHY and MAC airtime arithmetic (pure functions, no simulation).

Payloads are cut into MSDUs of at most ``mtu`` bytes (IP + UDP headers included), each carried in an
MPDU (QoS MAC header, FCS, LLC/SNAP); 802.11n/ac senders aggregate up to ``max_aggregate`` MPDUs of
one payload in an A-MPDU answered by a Block Ack.

Timing (IEEE Std 802.11-2016): slot 9 us, SIFS 16 us, DIFS = SIFS + 2 slots (10.3.2.3.7), CWmin 15,
CWmax 1023 (Table 17-21, OFDM PHY characteristics; same for HT, Table 19-25, and VHT, Table 21-28);
OFDM PPDU duration ``preamble + 4 us * ceil((16 + 8 * PSDU + 6) / N_DBPS)`` (17.4.3, eq. 17-29);
preamble + SIGNAL 20 us (legacy, 17.3.2), 36 us for one-stream HT-mixed (L-STF, L-LTF, L-SIG,
HT-SIG 8 us, HT-STF 4 us, one HT-LTF 4 us; 19.3.7), 40 us for one-stream VHT (adds VHT-SIG-B);
ACK (14 B) and compressed Block Ack (32 B) at a basic rate with the legacy preamble; retry limit 7
(dot11ShortRetryLimit default); aPPDUMaxTime 5.484 ms; A-MPDU at most 65,535 B (HT) / 1,048,575 B
(VHT) and 64 MPDUs (Block Ack window). The busy period of one access is PPDU + SIFS + ACK + DIFS,
Bianchi's T_s (and T_c, see :mod:`testbed.sim.links.csma`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from testbed.config.schema import CsmaSpec

__all__ = [
    "OK_END", "STANDARDS", "Dcf", "ack_time", "dcf_for", "exchange_time", "mac_efficiency", "mpdus_per_ppdu",
    "payload_airtime", "ppdu_time", "psdu_bytes",
]

OK_END = 1e-9
"""Bytes left below which a payload is complete."""


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
    gilbert_elliott: tuple[float, float, float, float] | None = None  # p_gb, p_bg, error_good, error_bad
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
        return round(math.log2((self.cw_max + 1) / (self.cw_min + 1)))

    def window(self, stage: int) -> int:
        """Contention window CW at a backoff stage (backoff uniform in 0..CW)."""
        return min((self.cw_min + 1) << stage, self.cw_max + 1) - 1


STANDARDS: dict[str, Dcf] = {
    "802.11a": Dcf(preamble=20e-6, max_aggregate=1, max_ampdu_bytes=4095),
    "802.11n": Dcf(),
    "802.11ac": Dcf(preamble=40e-6, max_ampdu_bytes=1_048_575),
}
"""PHY presets; slot, SIFS, CW and the rest are shared by the 5 GHz OFDM, HT and VHT PHYs."""



def dcf_for(spec: CsmaSpec) -> Dcf:
    """The :class:`Dcf` of a validated ``link.csma`` section."""
    base = STANDARDS[spec.standard]
    fields: dict[str, float | int] = dict(
        slot=spec.slot, sifs=spec.sifs, cw_min=spec.cw_min, cw_max=spec.cw_max, retry_limit=spec.retry_limit,
        basic_rate=spec.basic_rate, mtu=int(spec.mtu), frame_error_rate=spec.frame_error_rate,
        tx_power=spec.tx_power, rx_power=spec.rx_power, idle_power=spec.idle_power)
    if spec.preamble is not None:
        fields["preamble"] = spec.preamble
    if spec.max_aggregate is not None:
        fields["max_aggregate"] = spec.max_aggregate
    ge = spec.gilbert_elliott
    dcf = replace(base, **fields)  # type: ignore[arg-type]
    if ge is not None:
        dcf = replace(dcf, gilbert_elliott=(ge.p_good_bad, ge.p_bad_good, ge.error_good, ge.error_bad))
    return dcf


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
        if left <= OK_END:
            return total


def mac_efficiency(nbytes: float, rate: float, dcf: Dcf) -> float:
    """Goodput of a single station over its PHY rate for payloads of ``nbytes``."""
    return nbytes / (rate * payload_airtime(nbytes, rate, dcf))

