"""Compute charges of learned codec stages (multiply-accumulates per image, at the device's MAC rate)."""

from __future__ import annotations

from typing import Any

import numpy as np

from testbed.errors import ConfigError

__all__ = ["stage_charges"]


def stage_charges(chain: Any, feature_shape: tuple[int, ...]) -> tuple[list[tuple[str, str]], dict[str, tuple[float, float]]]:
    """How each stage of a chain is charged (see :func:`testbed.profiles.codec_time`).

    Learned stages are charged by their multiply-accumulates per image at the device's MAC rate:
    the TCL autoencoder's encoder on the node and decoder on the server, QCNet on the server only.
    Element-wise learned quantizers are charged like the uniform quantizer (AuGQ: an interval lookup
    and an affine map per element) or by their comparisons (soft quantization: ``2^b - 1`` per
    element to encode, one table lookup to decode).
    """
    import torch

    from testbed.split.profiler import codec_cost_keys

    keys: list[tuple[str, str]] = []
    macs: dict[str, tuple[float, float]] = {}
    elements = float(np.prod(feature_shape))
    x = torch.zeros(1, *feature_shape)
    for kind, key in codec_cost_keys(chain):
        stage = next((s for s in chain.tensor_stages if s.name == key), None)
        if stage is None or key in ("quantize", "binarize", "float16"):
            keys.append((kind, key))
            continue
        from testbed.research.common import count_compute
        from testbed.research.stages import cached_checkpoint

        if key == "autoencoder":
            enc, dec = cached_checkpoint(stage.checkpoint, "autoencoder", "checkpoint")[:2]
            code = enc(x)
            macs[key] = (count_compute(enc, x).macs, count_compute(dec, code).macs)
            x = code
        elif key == "qcnet":
            net = cached_checkpoint(stage.checkpoint, "qcnet", "checkpoint")[0]
            macs[key] = (0.0, count_compute(net, x).macs)
        elif key == "softquant":
            bits = stage.output_bits()
            macs[key] = ((2**bits - 1) * elements, elements)
        elif key == "augq":
            keys.append(("element", "quantize"))
            continue
        else:
            raise ConfigError("codec", key, "a stage the simulator knows how to charge "
                              "(quantize, binarize, float16, autoencoder, qcnet, softquant, augq)")
        keys.append(("macs", key))
    return keys, macs
