"""Bianchi's saturation analysis of the 802.11 DCF (pure functions).

Bianchi (2000), "Performance analysis of the IEEE 802.11 distributed coordination function", IEEE JSAC
18(3): a two-dimensional Markov chain of one station's backoff, decoupled from the others by a constant
conditional collision probability ``p``; its fixed point gives the attempt probability ``tau`` and the
saturation throughput. The simulated cell (:mod:`testbed.sim.links.csma`) is validated against it.
"""

from __future__ import annotations

__all__ = ["bianchi_fixed_point", "bianchi_tau", "bianchi_throughput"]


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
