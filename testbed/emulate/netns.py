"""Kernel-shaped link: two network namespaces made by the run, joined by a veth pair, with a
``tc tbf`` rate limiter on each end (and ``netem`` for the propagation delay where the kernel has
it), so real TCP traffic is shaped by the kernel.

Only the namespaces and interfaces created here are touched (and removed afterwards). Names are
``tbe<id>n`` / ``tbe<id>s`` (node and server side) with a private /30 in 10.254.0.0/16.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["NetnsLink", "netem_support", "tc_support"]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=20)


def tc_support() -> tuple[bool, str]:
    """Whether this process can build the namespaced, tc-shaped link; else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "needs root (CAP_NET_ADMIN) to create network namespaces and tc qdiscs"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"the '{tool}' command (iproute2) is not installed"
    name = f"tbeprobe{secrets.token_hex(3)}"
    r = _run("ip", "netns", "add", name)
    if r.returncode != 0:
        return False, f"cannot create a network namespace: {r.stderr.strip() or r.stdout.strip()}"
    try:
        r = _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8mbit",
                 "burst", "16kb", "latency", "100ms")
        if r.returncode != 0:
            return False, f"tc tbf is not available: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name)
    return True, "ok"


def netem_support() -> bool:
    """Whether the kernel has the netem qdisc (for a kernel-side propagation delay)."""
    name = f"tbeprobe{secrets.token_hex(3)}"
    if _run("ip", "netns", "add", name).returncode != 0:
        return False
    try:
        return _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                    "1ms").returncode == 0
    finally:
        _run("ip", "netns", "del", name)


def _bits(rate_bytes_per_s: float) -> str:
    return f"{max(1, round(rate_bytes_per_s * 8))}bit"


@dataclass
class NetnsLink:
    """``with NetnsLink(up_rate, down_rate, up_latency, down_latency, netem=...) as link:`` then
    run the server with ``link.exec_prefix(link.server_ns)`` bound to ``link.server_ip`` and the
    nodes in ``link.node_ns``. Rates in bytes/s, latencies in seconds (wall clock); the delays are
    applied only with ``netem`` (else the caller adds them in the application)."""

    up_rate: float
    down_rate: float
    up_latency: float = 0.0
    down_latency: float = 0.0
    limit: int = 100000
    queue_bytes: int = 16 << 20
    netem: bool = False

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        self.node_ns, self.server_ns = f"tbe{tag}n", f"tbe{tag}s"
        self.node_if, self.server_if = f"tbe{tag}a", f"tbe{tag}b"
        octet = secrets.randbelow(250) + 1
        sub = secrets.randbelow(63) * 4
        self.node_ip, self.server_ip = f"10.254.{octet}.{sub + 1}", f"10.254.{octet}.{sub + 2}"
        self._made: list[str] = []

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def _check(self, *cmd: str) -> None:
        r = _run(*cmd)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")

    def __enter__(self) -> NetnsLink:
        try:
            for ns in (self.node_ns, self.server_ns):
                self._check("ip", "netns", "add", ns)
                self._made.append(ns)
            self._check("ip", "link", "add", self.node_if, "netns", self.node_ns, "type", "veth",
                        "peer", "name", self.server_if, "netns", self.server_ns)
            for ns, dev, ip, rate, lat in ((self.node_ns, self.node_if, self.node_ip, self.up_rate, self.up_latency),
                                           (self.server_ns, self.server_if, self.server_ip, self.down_rate,
                                            self.down_latency)):
                self._check("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
                self._check("ip", "-n", ns, "link", "set", dev, "up")
                self._check("ip", "-n", ns, "link", "set", "lo", "up")
                tc = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev]
                # the bucket refills at `rate`; peakrate (5% above) stops its burst from leaving at once
                burst = str(max(4096, int(rate * 0.002)))
                shape = ["rate", _bits(rate), "burst", burst, "peakrate", _bits(rate * 1.05), "mtu", "1600"]
                if self.netem and lat > 0:  # netem delay, then tbf as its child
                    self._check(*tc, "root", "handle", "1:", "netem", "delay", f"{lat * 1e6:.0f}us",
                                "limit", str(self.limit))
                    self._check(*tc, "parent", "1:1", "handle", "10:", "tbf", *shape, "limit", str(self.queue_bytes))
                else:
                    self._check(*tc, "root", "tbf", *shape, "limit", str(self.queue_bytes))
        except BaseException:
            self.__exit__()
            raise
        return self

    def qdisc_stats(self) -> str:
        out = []
        for ns, dev in ((self.node_ns, self.node_if), (self.server_ns, self.server_if)):
            out.append(_run("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev).stdout.strip())
        return "\n".join(out)

    def __exit__(self, *exc: object) -> None:
        for ns in reversed(self._made):  # deleting a namespace removes its end of the veth pair
            _run("ip", "netns", "del", ns)
        self._made.clear()
