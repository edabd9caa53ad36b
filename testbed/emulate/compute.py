"""Real compute for the emulator: the head and codec on a node, decode and tail on the server.

Both sides build what the pipeline builds (:mod:`testbed.split.pipeline`): the model split at the
scenario's point, its codec chain, and on the server the tail a learned codec brings along
(:func:`~testbed.split.pipeline.finetuned_tail`), so emulated answers equal simulated ones.
:func:`check_emulable` rejects, with one line naming the field, what the emulator cannot do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from testbed.config.resolve import Resolved
from testbed.config.schema import Scenario
from testbed.errors import ConfigError

__all__ = ["NodeCompute", "ServerCompute", "check_emulable"]

_DISCIPLINES = ("shared_fifo", "fair_share")


def check_emulable(res: Resolved) -> None:
    """Raise :class:`ConfigError` for a scenario the emulator cannot run as the simulator does."""
    sc = res.scenario
    if sc.link.model not in _DISCIPLINES:
        raise ConfigError("link.model", sc.link.model,
                          f"{' or '.join(_DISCIPLINES)} (the emulator has no 802.11 MAC)")
    if sc.model is None:
        return
    if sc.model.split == "none":
        raise ConfigError("model.split", "none", "a split that sends a payload (nothing crosses the link)")
    if any("image" in stage for stage in sc.codec):
        raise ConfigError("codec", list(sc.codec), "a tensor codec chain (image baselines are not emulated)")


def _dataset(sc: Scenario) -> Any:
    from testbed.bridge.cache import dataset_arg
    from testbed.split.data import load_dataset, preprocess_for

    assert sc.model is not None
    return load_dataset(dataset_arg(sc), preprocess_for(sc.model.name, sc.model.weights))


class NodeCompute:
    """The scenario's head and codec chain on this machine's CPU, over the scenario's dataset."""

    def __init__(self, res: Resolved) -> None:
        import torch

        import testbed.research  # noqa: F401  (registers the learned codec stages)
        from testbed.split.codecs import parse_chain
        from testbed.split.models import load_model, split_loaded

        sc = res.scenario
        assert sc.model is not None
        self.torch = torch
        model = load_model(sc.model.name, sc.model.weights, sc.model.seed)
        self.head, _ = split_loaded(sc.model.name, model, sc.model.split)
        self.chain = parse_chain(list(sc.codec) or None, "codec")
        self.images = _dataset(sc).images

    def head_features(self, image: int) -> Any:
        with self.torch.inference_mode():
            return self.head(self.images[image:image + 1])

    def encode(self, features: Any) -> bytes:
        with self.torch.inference_mode():
            return self.chain.encode(features)[0]


class ServerCompute:
    """Decode payloads (from their own headers) and run the tail in batches on ``device``."""

    def __init__(self, res: Resolved, device: str | None = None) -> None:
        import copy

        import torch

        import testbed.research  # noqa: F401  (registers the learned codec stages)
        from testbed.split.codecs import parse_chain
        from testbed.split.data import preprocess_for
        from testbed.split.models import load_model, split_loaded
        from testbed.split.pipeline import default_device, finetuned_tail

        sc = res.scenario
        assert sc.model is not None
        self.torch = torch
        self.device = torch.device(device) if device else default_device()
        model = load_model(sc.model.name, sc.model.weights, sc.model.seed)
        head, tail = split_loaded(sc.model.name, model, sc.model.split)
        # the tail the pipeline runs behind this chain: a learned codec's fine-tuned one, if it has one
        self.chain = parse_chain(list(sc.codec) or None, "codec")  # the receiver's own chain (decode)
        tail = finetuned_tail(self.chain, sc.model.name, sc.model.split, tail)
        crop = preprocess_for(sc.model.name, sc.model.weights).crop
        with torch.inference_mode():
            self.shape = tuple(head(torch.zeros(1, 3, crop, crop)).shape[1:])
        self.tail = copy.deepcopy(tail).to(self.device) if self.device.type != "cpu" else tail

    def decode(self, payload: bytes) -> Any:
        """One payload to a feature tensor ``[1, ...]`` with the scenario's own codec chain, bounded by
        the tail's input shape before anything is decompressed; raises PayloadError when corrupt."""
        from testbed.split.codecs import decode_payloads

        return decode_payloads([payload], self.chain, self.shape).float()

    def run_tail(self, features: list[Any]) -> np.ndarray:
        """Top-1 class per request of a batch (all from one chain and shape)."""
        torch = self.torch
        with torch.inference_mode():
            x = torch.cat(features).to(self.device)
            out = self.tail(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            return out.argmax(dim=1).cpu().numpy()
