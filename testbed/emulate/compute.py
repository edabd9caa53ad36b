"""Real compute for the emulator: the head and codec on a node, decode and tail on the server.

Both sides build what the pipeline builds (:mod:`testbed.split.pipeline`): the model split at the
scenario's point, its codec chain, and on the server the tail a learned codec brings along
(:func:`~testbed.split.pipeline.finetuned_tail`), so emulated answers equal simulated ones.
:func:`check_emulable` rejects, with one line naming the field, what the emulator cannot do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from testbed.config.resolve import Resolved
from testbed.config.schema import Scenario
from testbed.errors import ConfigError

__all__ = ["NodeCompute", "ServerCompute", "answers_of", "check_emulable", "top1_first"]

_DISCIPLINES = ("shared_fifo", "fair_share")


def check_emulable(res: Resolved) -> None:
    """Raise :class:`ConfigError` for a scenario the emulator cannot run as the simulator does."""
    sc = res.scenario
    if sc.link.model not in _DISCIPLINES:
        raise ConfigError("link.model", sc.link.model,
                          f"{' or '.join(_DISCIPLINES)} (the emulator has no 802.11 MAC)")
    if sc.link.rate_trace is not None:
        raise ConfigError("link.rate_trace", "a rate trace", "a scenario without a rate trace: the emulator's "
                          "shaper runs at a fixed rate (testbed run simulates the trace)")
    for field, trace in (("link.packet_trace", sc.link.packet_trace),
                         ("link.downlink.packet_trace", sc.link.downlink.packet_trace)):
        if trace is not None:
            raise ConfigError(field, "a packet trace", "a scenario without a packet trace: the emulator's shaper "
                              "runs at a fixed rate (testbed run replays the trace)")
    for g, group in enumerate(sc.fleet):
        if group.adaptive is not None:
            raise ConfigError(f"fleet.{g}.adaptive", "an adaptive group", "groups of one configuration: the "
                              "emulator does not choose splits per frame (testbed run simulates it)")
        if group.rate_trace is not None:
            raise ConfigError(f"fleet.{g}.rate_trace", "a node rate trace", "nodes at a fixed rate: the emulator's "
                              "shaper does not follow a trace (testbed run simulates it)")
    if sc.topology:  # the first topology feature set, by what it needs that the emulator lacks
        field, value = next((f, v) for f, v, used in (
            ("cells", [c.name for c in sc.cells], len(sc.cells) > 1),
            ("servers", [s.name for s in sc.servers], len(sc.servers) > 1),
            ("backhaul", "a backhaul", sc.backhaul is not None),
            ("assignment", sc.assignment.policy if sc.assignment is not None else None, sc.assignment is not None),
            ("cells", [c.name for c in sc.cells], bool(sc.cells)),
            ("servers", [s.name for s in sc.servers], True)) if used)
        raise ConfigError(field, value, "one link and one server (link:, server:): the emulator runs one shaped cell "
                          "and one server process (testbed run simulates cells, servers, backhaul and assignment)")
    if sc.model is None:
        return
    if sc.model.split == "none":
        raise ConfigError("model.split", "none", "a split that sends a payload (nothing crosses the link)")
    for g, group in enumerate(sc.fleet):
        if group.dataset is not None:
            raise ConfigError(f"fleet.{g}.dataset", "a group dataset", "the scenario's dataset only: the emulator's "
                              "nodes share one dataset (testbed run simulates per-group datasets)")
        for key in ("model", "codec"):
            if getattr(group, key) is not None:
                raise ConfigError(f"fleet.{g}.{key}", f"a group {key}", f"the scenario's {key} only: the emulator "
                                  "runs one configuration (testbed run simulates heterogeneous fleets)")
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


def answers_of(model: str) -> Callable[[Any], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The pipeline's own answer rule for ``model`` (:meth:`SplitPipeline.answers
    <testbed.split.pipeline.SplitPipeline.answers>`: top-1, top-5 ``[N, 5]`` padded with -1, confidence),
    bound to the model's spec without loading the model a second time."""
    from testbed.split.models import get_spec
    from testbed.split.pipeline import SplitPipeline

    shell = SplitPipeline.__new__(SplitPipeline)  # answers() reads only the spec (the task)
    shell.spec = get_spec(model)
    return shell.answers


def top1_first(top1: np.ndarray, top5: np.ndarray) -> np.ndarray:
    """``[N, 5]``: each image's top-1 answer, then its other best classes in order (-1 padded).

    The pipeline's top-1 is ``argmax`` and its top-5 ``topk``; they agree on the best class except on
    exact ties, and a detector has a top-1 label but no top-5 (all -1). Leading with the top-1 keeps
    the wire's ``top5[0]`` equal to the pipeline's prediction and the set equal to its top-5
    whenever the top-1 is among them (so detectors answer ``[label, -1, -1, -1, -1]``).
    """
    out = np.full((len(top1), 5), -1, dtype=np.int64)
    for i, (best, row) in enumerate(zip(top1.tolist(), top5.tolist(), strict=True)):
        ranked = [best, *(c for c in row if c != best and c >= 0)][:5]
        out[i, :len(ranked)] = ranked
    return out


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
        self.answers = answers_of(sc.model.name)

    def decode(self, payload: bytes) -> Any:
        """One payload to a feature tensor ``[1, ...]`` with the scenario's own codec chain, bounded by
        the tail's input shape before anything is decompressed; raises PayloadError when corrupt."""
        from testbed.split.codecs import decode_payloads

        return decode_payloads([payload], self.chain, self.shape).float()

    def run_tail(self, features: list[Any]) -> np.ndarray:
        """The five best classes ``[N, 5]`` per request of a batch (all from one chain and shape), top-1
        first, as the pipeline answers (:func:`top1_first`; -1 where none)."""
        torch = self.torch
        with torch.inference_mode():
            x = torch.cat(features).to(self.device)
            out = self.tail(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            top1, top5, _ = self.answers(out)
            return top1_first(np.asarray(top1), np.asarray(top5))
