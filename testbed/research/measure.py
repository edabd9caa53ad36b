"""What every method's research-eval rows share: the settings, the split task's test features,
teacher and compute counts, and :meth:`EvalContext.measure`, which sends a test set through a codec
chain as real payloads and records a :class:`Row`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from testbed.research.common import Compute, count_compute
from testbed.research.nets import SplitTask, evaluate_logits, load_split_task
from testbed.research.options import TrainOptions
from testbed.split.codecs import parse_chain, read_frame
from testbed.split.codecs.chain import decode_payloads

__all__ = ["LZMA", "SECTIONS", "EvalContext", "EvalSettings", "Log", "Row", "Seq", "log_row", "measure_row"]

SECTIONS = ("split", "weights", "input", "tabular")
#: the lossless coder behind every learned and plain quantizer in the tables and training summaries
LZMA: dict[str, Any] = {"lzma": {"preset": 6}}
Log = Callable[[str], Any]


@dataclass(frozen=True)
class EvalSettings(TrainOptions):
    """Options of ``testbed research-eval``: those of ``testbed train`` plus ``epochs`` and ``tabular``
    (a scikit-learn table, None to skip)."""

    epochs: int = 10
    tabular: str | None = "breast_cancer"


@dataclass
class Row:
    """One measured configuration."""

    section: str
    method: str
    bits: str
    codec: str
    accuracy: float | None
    agreement: float | None
    payload_bytes: float | None
    body_bytes: float | None
    node: Compute
    server: Compute
    encode_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Seq(nn.Module):
    """Compose optional modules (None entries skipped) for compute counting."""

    def __init__(self, *mods: nn.Module | None) -> None:
        super().__init__()
        self.mods = nn.ModuleList(m for m in mods if m is not None)

    def forward(self, x: Tensor) -> Tensor:
        for m in self.mods:
            x = m(x)
        return x


def _through_chain(spec: list[dict[str, Any]], x: Tensor) -> tuple[Tensor, float, float, float]:
    """Encode ``x`` into payloads and decode them: (decoded, mean payload bytes, mean body bytes, ms)."""
    chain = parse_chain(spec)
    res = chain.encode_timed(x)
    decoded = decode_payloads(res.payloads, chain, tuple(x.shape[1:]))
    bodies = [len(read_frame(p).body) for p in res.payloads]
    return (decoded, float(np.mean([len(p) for p in res.payloads])), float(np.mean(bodies)),
            1e3 * float(np.mean(res.seconds)))


class EvalContext:
    """The split task and what every method's rows share: test features, teacher, compute counts,
    the output directory and :meth:`measure`, which sends a test set through a codec chain."""

    def __init__(self, settings: EvalSettings, task: SplitTask, device: torch.device, log: Log,
                 t_start: float) -> None:
        self.settings, self.task, self.device, self.log, self.t_start = settings, task, device, log, t_start
        self.out = Path(settings.out)
        self.f_test = task.features(task.x_test)
        self.teacher = task.teacher_logits(task.x_test)
        self.head_c = count_compute(task.head, task.x_test[:1])
        self.tail_c = count_compute(task.tail, self.f_test[:1])
        self._input: SplitTask | None = None
        self.rows: list[Row] = []

    def path(self, name: str) -> str:
        """A file in the output directory (checkpoints)."""
        return str(self.out / name)

    def input_task(self) -> SplitTask:
        """The same model split at ``input`` (the whole model on the server), built once."""
        if self._input is None:
            s = self.settings
            self._input = load_split_task(s.model, s.weights, "input", s.dataset, s.limit, s.seed, device=self.device)
        return self._input

    def measure(self, section: str, method: str, bits: str, spec: list[dict[str, Any]] | None, server: nn.Module,
                node_c: Compute, server_c: Compute, x: Tensor, labels: Tensor | None = None,
                teacher: Tensor | None = None, **extra: Any) -> Row:
        """Send ``x`` through ``spec`` (None: raw float32), run ``server`` and record the row.
        ``labels``/``teacher`` default to the split task's test labels (when meaningful) and teacher."""
        if teacher is None:
            teacher = self.teacher
            labels = self.task.y_test if self.task.target == "labels" else None
        row = measure_row(section, method, bits, spec, server, node_c, server_c, x, labels, teacher,
                          strip=str(self.out), **extra)
        self.rows.append(row)
        log_row(self.log, row, time.perf_counter() - self.t_start)
        return row


def log_row(log: Log, row: Row, seconds: float) -> None:
    """One progress line for a measured row."""
    quality = (f"mse={row.extra['mse']:.4f} r2={row.extra['r2']:.4f}" if "mse" in row.extra
               else f"acc={row.accuracy} agree={row.agreement}")
    log(f"[{seconds:6.1f}s] {row.section:8s} {row.method:28s} {row.bits:>5s} {quality} "
        f"payload={row.payload_bytes:.0f} B")


def measure_row(section: str, method: str, bits: str, spec: list[dict[str, Any]] | None, server: nn.Module,
                node_c: Compute, server_c: Compute, x: Tensor, labels: Tensor | None, teacher: Tensor | None,
                strip: str = "", **extra: Any) -> Row:
    """Send ``x`` through ``spec`` (None: raw float32) as real payloads, decode them, run ``server``
    and return the row; a float (regression) ``labels`` puts ``mse`` and ``r2`` in the row's extra.
    ``strip`` (a directory) is removed from checkpoint paths in the row's codec text."""
    if spec:
        dec, pay, body, ms = _through_chain(spec, x)
    else:
        dec, pay, body, ms = x, float(4 * x[0].numel()), float(4 * x[0].numel()), None
    with torch.no_grad():
        logits = server(dec)
    m = evaluate_logits(logits, labels, teacher if labels is None or not labels.is_floating_point() else None)
    codec = parse_chain(spec).describe() if spec else "float32"
    if strip:
        codec = codec.replace(strip + "/", "")
    quality: dict[str, Any] = {k: m[k] for k in ("mse", "r2") if k in m}
    return Row(section, method, bits, codec, m.get("accuracy"), m.get("agreement"), pay, body, node_c, server_c,
               ms, {**extra, **quality})
