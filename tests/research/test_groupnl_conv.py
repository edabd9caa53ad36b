"""The GroupNL convolution (Ding, Xie et al., IEEE TMC 2026, arXiv:2506.12335): costs equal the
formulas, NLF hyperparameters are fixed buffers restored exactly from a checkpoint, shapes match."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from testbed.research.common import load_checkpoint
from testbed.research.groupnl import (
    GroupNLConfig,
    GroupNLConv2d,
    groupnl_formula,
    groupnl_head,
    groupnl_layers,
    restore_groupnl,
    save_groupnl,
)
from testbed.research.nets import TinyResNet
from testbed.split.models.efficientnet_lite import SameConv2d
from testbed.split.profiler import count_compute


def _tiny_head() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().split("layer1")[0].eval()


def _dw_head() -> nn.Module:
    """A stem, a depthwise 'SAME' conv and a 1x1 projection with bias (every case the transform meets)."""
    g = torch.Generator().manual_seed(1)
    head = nn.Sequential(SameConv2d(3, 12, 3, 2), nn.BatchNorm2d(12), nn.ReLU6(),
                         SameConv2d(12, 12, 3, 1, groups=12), nn.BatchNorm2d(12), nn.ReLU6(),
                         nn.Conv2d(12, 10, 1, bias=True))
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return head.eval()


@pytest.mark.parametrize("ratio,groups,sparse", [(2, 4, True), (3, 2, True), (4, 1, False), (2, 3, False)])
def test_macs_and_params_equal_the_formulas(ratio: int, groups: int, sparse: bool) -> None:
    x = torch.randn(1, 3, 17, 19)
    for head in (_tiny_head(), _dw_head()):
        cfg = GroupNLConfig(ratio, groups, sparse, seed=5)
        gnl = groupnl_head(head, cfg)
        got = count_compute(gnl, x)
        want = groupnl_formula(head, cfg, x)
        assert (got.macs, got.params) == (want.macs, want.params)
        assert got.macs < count_compute(head, x).macs
        with torch.no_grad():
            assert gnl(x).shape == head(x).shape


def test_one_conv_by_hand() -> None:
    """Conv(8, 12, 3) at r = 3: a seed Conv(8, 4, 3), 8 NLF maps; on a 10x10 output 100*4*8*9 MACs."""
    conv = nn.Conv2d(8, 12, 3, padding=1, bias=False)
    g = GroupNLConv2d(conv, 3, 2, torch.Generator().manual_seed(0))
    assert g.seed_channels == 4 and tuple(g.nlf_a.shape) == (1, 8, 1, 1)
    c = count_compute(g, torch.randn(1, 8, 10, 10))
    assert (c.macs, c.params) == (100 * 4 * 8 * 9, 4 * 8 * 9)
    assert [type(m) for m in g.modules()] == [GroupNLConv2d, nn.Conv2d]  # no extra conv or batch norm
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        y, seed = g(x), g.seed_conv(x)
    assert torch.equal(y[:, :4], seed)
    # generated map j: a_j * sin(w_j * seed[j mod 4] + p_j)
    for j in range(8):
        want = g.nlf_a[0, j] * torch.sin(g.nlf_w[0, j] * seed[:, j % 4] + g.nlf_p[0, j])
        assert torch.allclose(y[:, 4 + j], want)
    # one (a, w, p) per (copy, group): the 2 groups of 2 seed maps share theirs
    assert torch.equal(g.nlf_a[0, 0], g.nlf_a[0, 1]) and torch.equal(g.nlf_w[0, 2], g.nlf_w[0, 3])


def test_sparse_replaces_depthwise_with_a_seed_depthwise() -> None:
    conv = SameConv2d(12, 12, 3, 2, groups=12)
    g = GroupNLConv2d(conv, 4, 1, torch.Generator().manual_seed(0), sparse=True)
    assert g.seed_conv.groups == 3 and g.seed_conv.in_channels == 3
    c = count_compute(g, torch.randn(1, 12, 8, 8))
    assert (c.macs, c.params) == (4 * 4 * 3 * 9, 3 * 9)


def test_nlf_hyperparameters_are_fixed_buffers_restored_exactly(tmp_path: object) -> None:
    head = _dw_head()
    gnl = groupnl_head(head, GroupNLConfig(2, 2, True, seed=11))
    names = {n for n, _ in gnl.named_parameters()}
    assert not any("nlf" in n for n in names)
    bufs = {n: b.clone() for n, b in gnl.named_buffers() if "nlf" in n}
    assert len(bufs) == 3 * len(groupnl_layers(gnl))
    # training moves the seed filters, never the NLFs
    opt = torch.optim.SGD(gnl.parameters(), lr=0.1)
    gnl.train()
    gnl(torch.randn(2, 3, 16, 16)).pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(b, dict(gnl.named_buffers())[n]) for n, b in bufs.items())
    # a checkpoint restores them bit for bit, whatever seed the rebuilt structure drew with
    path = str(tmp_path) + "/g.pt"  # type: ignore[operator]
    save_groupnl(path, gnl, GroupNLConfig(2, 2, True, seed=11), "m", "s", "w")
    blob = load_checkpoint(path, "groupnl")
    blob["config"]["seed"] = 12
    back = restore_groupnl(blob, head)
    for n, b in gnl.state_dict().items():
        assert torch.equal(back.state_dict()[n], b), n
    x = torch.randn(2, 3, 16, 16)
    gnl.eval()
    with torch.no_grad():
        assert torch.equal(back(x), gnl(x))


def test_draws_are_seeded_and_leave_the_global_rng_alone() -> None:
    head = _dw_head()
    before = torch.random.get_rng_state()
    a = groupnl_head(head, GroupNLConfig(2, 2, seed=3))
    b = groupnl_head(head, GroupNLConfig(2, 2, seed=3))
    c = groupnl_head(head, GroupNLConfig(2, 2, seed=4))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a.state_dict()["0.nlf_w"], b.state_dict()["0.nlf_w"])
    assert not torch.equal(a.state_dict()["0.nlf_w"], c.state_dict()["0.nlf_w"])


@pytest.mark.zoo
@pytest.mark.parametrize("model,split", [("efficientnet_lite0", "stage3"), ("resnet18", "layer2")])
def test_registered_models(model: str, split: str) -> None:
    from testbed.split.models import split_model

    head, _ = split_model(model, split, "random")
    x = torch.randn(1, 3, 64, 64)
    cfg = GroupNLConfig(2, 4)
    gnl = groupnl_head(head, cfg).eval()
    got, want = count_compute(gnl, x), groupnl_formula(head, cfg, x)
    assert (got.macs, got.params) == (want.macs, want.params)
    with torch.no_grad():
        assert gnl(x).shape == head(x).shape


@pytest.mark.parametrize("sparse", [True, False])
def test_keep_last_keeps_the_output_convolution_and_the_formula_follows(sparse: bool) -> None:
    x = torch.randn(1, 3, 17, 19)
    head = _dw_head()
    cfg = GroupNLConfig(2, 2, sparse, seed=5, keep_last=True)
    gnl = groupnl_head(head, cfg)
    assert type(gnl[6]) is nn.Conv2d and torch.equal(gnl[6].weight, head[6].weight)  # the tail's input conv
    assert isinstance(gnl[0], GroupNLConv2d) and isinstance(gnl[3], GroupNLConv2d) == sparse
    got, want = count_compute(gnl, x), groupnl_formula(head, cfg, x)
    assert (got.macs, got.params) == (want.macs, want.params)
    # no convolution or batch norm added: the same batch norms, one (seed) convolution per original one
    kinds = lambda m: sorted(type(k).__name__ for k in m.modules() if isinstance(k, (nn.Conv2d, nn.BatchNorm2d)))  # noqa: E731
    assert kinds(gnl) == kinds(head)


def test_calibration_keeps_the_seed_maps_and_starts_the_generated_ones_constant() -> None:
    from testbed.research.groupnl import calibrate_groupnl, following_batchnorms

    head = _dw_head()
    with torch.no_grad():  # a pretrained-like scale: maps in the tens
        head[0].weight.mul_(20.0)
    gnl = groupnl_head(head, GroupNLConfig(2, 2, True, seed=1, keep_last=True)).eval()
    x = torch.randn(8, 3, 16, 16)
    pairs = following_batchnorms(gnl, x[:1])
    assert [type(p).__name__ for p in pairs.values()] == ["BatchNorm2d", "BatchNorm2d"]
    with torch.no_grad():
        before = gnl[1](gnl[0](x))[:, :6]  # the stem's seed maps after their batch norm
    scales = calibrate_groupnl(gnl, x, batch_size=3)
    assert set(scales) == {"0", "3"}
    with torch.no_grad():
        after = gnl[1](gnl[0](x))
        seed = gnl[0].seed_conv(x)
    assert torch.allclose(after[:, :6], before, rtol=1e-4, atol=1e-4)  # the seed maps' output unchanged
    assert torch.allclose(seed.std(dim=(0, 2, 3)), torch.ones(6), atol=1e-4)  # the sinusoids see unit scale
    assert torch.allclose(after[:, 6:], gnl[1].bias[6:].view(1, -1, 1, 1).expand_as(after[:, 6:]))  # constant
    again = groupnl_head(head, GroupNLConfig(2, 2, True, seed=1, keep_last=True)).eval()
    calibrate_groupnl(again, x, batch_size=8)
    for n, t in gnl.state_dict().items():  # deterministic, whatever the batch size
        assert torch.allclose(again.state_dict()[n], t, rtol=1e-5, atol=1e-6), n
