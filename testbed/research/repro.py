"""Reproducible training: a seed fixes every number (checkpoints and metrics) on a CPU.

Three things differ between two runs of the same training, and each is pinned here:

* **Nondeterministic kernels** - :func:`reproducible` turns on ``torch.use_deterministic_algorithms``
  (and cuDNN's deterministic mode on a GPU), so an operation without a deterministic kernel is an
  error instead of a silent difference.
* **Thread count** - reductions split over threads sum in another order; :func:`reproducible` fixes
  torch's intra-op threads (1 by default) and restores the caller's count afterwards.
* **The machine's instruction set** - oneDNN (convolutions), MKL (matrix products) and ATen's own
  vectorized kernels pick AVX-512 or AVX2 code paths by CPU, which round differently.
  :data:`PINNED_ENV` caps all three at AVX2 (the x86-64 level every machine this testbed targets has);
  the variables are read when torch is imported, so :func:`pin_cpu_isa` must run first (the ``testbed``
  command-line entry does it before it imports torch; tests set them in ``tests/research/conftest.py``).

Data order is seeded by the callers (``torch.Generator().manual_seed(seed)`` per training) and module
initialisation by :func:`testbed.research.common.seeded`; neither touches the global RNG.
A GPU run is deterministic for a given GPU and driver, not equal to a CPU run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["PINNED_ENV", "fingerprint", "isa_pinned", "pin_cpu_isa", "reproducible"]

#: environment read by torch at import: instruction-set caps of ATen, oneDNN and MKL
PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}


def pin_cpu_isa(environ: dict[str, str] | None = None) -> bool:
    """Set :data:`PINNED_ENV` (values already set by the user are kept). Returns False when torch
    was imported before (the caps then apply only to new processes)."""
    env = os.environ if environ is None else environ
    for key, value in PINNED_ENV.items():
        env.setdefault(key, value)
    return "torch" not in sys.modules


def isa_pinned() -> bool:
    """True when this process runs with :data:`PINNED_ENV` (as set before torch was imported)."""
    return all(os.environ.get(k) == v for k, v in PINNED_ENV.items())


@contextlib.contextmanager
def reproducible(threads: int | None = 1) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count for the block; the caller's settings are
    restored afterwards."""
    import torch

    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", PINNED_ENV["CUBLAS_WORKSPACE_CONFIG"])
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def fingerprint(obj: Any) -> str:
    """SHA-256 of tensors, numbers and strings nested in dicts/lists (dict keys sorted): equal
    fingerprints mean bit-identical checkpoints or metrics."""
    import torch

    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, Mapping):
            h.update(b"{")
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                walk(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                walk(v)
            h.update(b"]")
        elif isinstance(o, float):
            h.update(o.hex().encode())
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()
