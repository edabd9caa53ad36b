"""The baselines: the tiny digits ResNet that the other methods split (``testbed train base``) and
the plain codecs every method is compared with (float32, uniform quantization, binarization)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from testbed.errors import ConfigError
from testbed.research.common import Compute, count_compute
from testbed.research.measure import LZMA, EvalContext, Row
from testbed.research.nets import TINY_MODEL, load_split_task
from testbed.research.registry import Method, Option, register_method
from testbed.research.train import TrainOptions, eval_tail

__all__ = ["METHOD"]


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Train the tiny ResNet on digits (seeded) and save it to ``o.out``."""
    if o.model != TINY_MODEL:
        raise ConfigError("model", o.model, f"{TINY_MODEL} (torchvision models bring their own weights)")
    task = load_split_task(o.model, "", o.split, o.dataset, o.limit, o.seed, base_epochs=p["epochs"],
                           device=device, base_out=o.out)
    return eval_tail(task.head, task.tail, task)


def eval_rows(ctx: EvalContext) -> list[Row]:
    """Raw float32 and plain quantizers at the split; the float32 image at ``input``."""
    t, lz = ctx.task, LZMA
    rows = [ctx.measure("split", "float32 (no codec)", "32", None, t.tail, ctx.head_c, ctx.tail_c, ctx.f_test)]
    for b in (1, 2, 4):
        rows.append(ctx.measure("split", "plain quantize + dequantize", str(b), [{"quantize": {"bits": b}}, lz],
                                t.tail, ctx.head_c, ctx.tail_c, ctx.f_test))
    rows.append(ctx.measure("split", "plain binarize + dequantize", "1", [{"binarize": {}}, lz], t.tail, ctx.head_c,
                            ctx.tail_c, ctx.f_test))
    itask = ctx.input_task()
    full = nn.Sequential(itask.head, itask.tail).eval()
    rows.append(ctx.measure("input", "float32 image (no codec)", "32", None, full, Compute(0, 0),
                            count_compute(full, t.x_test[:1]), t.x_test, raw_uint8_bytes=t.x_test[0].numel()))
    return rows


METHOD = register_method(Method(
    name="base", title="the tiny digits ResNet and the plain codecs (float32, uniform quantization, binarization)",
    train=train, eval_rows=eval_rows, order=0,
    options=(Option("epochs", int, 12, "training epochs"),)))
