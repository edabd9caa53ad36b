"""Model-side checks of a resolved scenario: what ``testbed validate`` adds to the schema.

The schema (:mod:`testbed.config.schema`) cannot know model names, weights, split points, codec
stages or datasets (they live on the model side, which imports torch), and the resolver only
checks that named files exist. These checks run in ``validate`` and before every run, sweep cell
and capacity probe (:func:`testbed.run.prepare.prepare`), so a scenario that validates does not
fail at run time on its configuration: the model and split exist, the weights name is known, the
codec chain parses (or the image encoding's parameters are valid), the dataset kind is known and
has its folder, and the device profiles hold every figure the run charges (head blocks on each
node profile, the tail table on the server profile, the codec stages' costs on both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from testbed.bridge.cache import dataset_arg, image_codec
from testbed.config.profiles import Profile
from testbed.config.resolve import Resolved
from testbed.config.schema import Scenario
from testbed.core.charges import StageCost, codec_time, head_figure, tail_table
from testbed.dists import Deterministic
from testbed.errors import ConfigError

__all__ = ["check", "check_model"]


def check(resolved: Resolved) -> None:
    """Raise :class:`ConfigError` naming the field when the scenario cannot run."""
    check_model(resolved)


def check_model(resolved: Resolved) -> None:
    """Everything a run needs from the model side, for a scenario with a ``model`` section."""
    sc = resolved.scenario
    if sc.model is None:
        return
    from testbed.split.models import get_spec

    spec = get_spec(sc.model.name, "model.name")
    spec.check_point(sc.model.split, "model.split")
    _check_weights(sc)
    _check_head(sc)
    _check_dataset(sc)
    costs = _codec_costs(sc)
    _check_profiles(resolved, tuple(spec.points), costs)
    splits = [m.split for m in (sc.group_model(g) for g in range(len(sc.fleet))) if m is not None]
    if "none" in splits and len(set(splits)) > 1:
        g = splits.index("none") if sc.fleet[splits.index("none")].model is not None else next(
            i for i, grp in enumerate(sc.fleet) if grp.model is not None)
        raise ConfigError(f"fleet.{g}.model.split", splits[g], "one kind of fleet: every group sends a payload "
                          "(a split other than none) or none does (split none answers on the node)")
    for g, group in enumerate(sc.fleet):
        if group.adaptive is not None:
            for k in range(len(group.adaptive.configs)):
                _check_group(resolved, g, k)
        elif group.model is not None or group.codec is not None:
            _check_group(resolved, g)


def _check_group(resolved: Resolved, g: int, variant: int | None = None) -> None:
    """A group of its own model or codec (a heterogeneous fleet): what :func:`check_model` checks, on the
    group's model and codec, its node profile and every server's; errors name ``fleet.G.model...``,
    ``fleet.G.codec...`` or ``fleet.G.device``."""
    from testbed.split.models import get_spec

    sc = resolved.scenario
    group = sc.fleet[g]
    model, codec = sc.group_variants(g)[variant or 0]
    scg = sc.model_copy(update={"model": model, "codec": codec})
    prefix = f"fleet.{g}" if variant is None else f"fleet.{g}.adaptive.configs.{variant}"
    try:
        spec = get_spec(model.name, "model.name")
        spec.check_point(model.split, "model.split")
        _check_weights(scg)
        _check_head(scg)
        costs = _codec_costs(scg)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}.{exc.path}", exc.value, exc.allowed) from None
    profile, where = resolved.node_profiles[g], f"fleet.{g}.device"
    if group.head is None:
        _figure(where, profile, head_figure, profile, model.name, model.split, tuple(spec.points))
    if group.encode is None:
        _figure(where, profile, codec_time, profile, costs, 1, 1.0, "encode")
    if model.split == "none":
        return
    servers = resolved.server_profiles or (resolved.server_profile,)
    for s, (srv, server) in enumerate(zip(sc.server_specs, servers)):
        field = f"servers.{s}.device" if sc.servers else "server.device"
        if srv.service is None:
            _figure(field, server, tail_table, server, model.name, model.split)
        if srv.decode == Deterministic(0.0):
            _figure(field, server, codec_time, server, costs, 1, 1.0, "decode")


def _check_weights(sc: Scenario) -> None:
    assert sc.model is not None
    from testbed.split.models.weights import is_checkpoint_path, weights_enum

    w = sc.model.weights
    if w != "random" and not is_checkpoint_path(w):
        from testbed.split.models import get_spec

        weights_enum(get_spec(sc.model.name), w, "model.weights")


def _check_head(sc: Scenario) -> None:
    """A ``model.head`` checkpoint is one a registered method wrote (trained on this model and split:
    checked when the pipeline loads it); split ``input``/``none`` have no head to replace."""
    assert sc.model is not None
    if sc.model.head is None:
        return
    if sc.model.split in ("input", "none"):
        raise ConfigError("model.head", sc.model.head, "no head checkpoint at split input or none")
    import testbed.research  # noqa: F401  (registers the head loaders)
    from testbed.split.models import head_method

    head_method(sc.model.head)


def _check_dataset(sc: Scenario) -> None:
    """The scenario's dataset and every fleet group's own (``fleet.G.dataset``)."""
    from testbed.split.data import parse_dataset

    checks = [("dataset", sc)] + [(f"fleet.{g}.dataset", sc.model_copy(update={"dataset": group.dataset}))
                                  for g, group in enumerate(sc.fleet) if group.dataset is not None]
    for field, scd in checks:
        spec = parse_dataset(dataset_arg(scd), path=field)
        if spec.name == "imagefolder" and not spec.path:
            raise ConfigError(f"{field}.path", None, "a folder of class folders for kind imagefolder")
        if spec.name == "photos":
            from testbed.split.data.photos import MAX_FRAMES

            if spec.limit is not None and spec.limit > MAX_FRAMES:
                raise ConfigError(f"{field}.limit", spec.limit, f"at most {MAX_FRAMES} frames (each held in memory)")


def _codec_costs(sc: Scenario) -> tuple[StageCost, ...]:
    """How the run will charge the codec (what :mod:`testbed.bridge.cache` records)."""
    assert sc.model is not None
    params = image_codec(sc.codec)
    if params is not None:
        if sc.model.split != "input":
            raise ConfigError("codec.0.image", dict(params), "image encodings apply to split 'input' only")
        return () if params["format"] == "raw" else (StageCost("element", params["format"]),)
    if not sc.codec:
        return ()
    import testbed.research  # noqa: F401  (registers the learned codec stages)
    from testbed.split.codecs import parse_chain

    chain = parse_chain([dict(stage) for stage in sc.codec], "codec")
    if sc.model.split in ("input", "none"):
        return ()
    from testbed.split.models import feature_table

    shape = tuple(next(f.shape for f in feature_table([sc.model.name]) if f.point == sc.model.split))
    _dry_run(chain, shape, sc.model.name, sc.model.split)
    return tuple(chain.costs(shape))


def _dry_run(chain: Any, shape: tuple[int, ...], model: str, split: str) -> None:
    """Send one zero feature map of ``shape`` through the chain's tensor stages and back, so that a
    stage that does not fit the split (an autoencoder checkpoint trained for other channels) fails
    here, naming its field, and not at run time."""
    import torch

    from testbed.split.codecs import PayloadError

    y = torch.zeros(1, *shape)
    sides = []
    stages = list(enumerate(chain.tensor_stages))
    where = 0
    try:
        for i, stage in stages:
            where = i
            y, side = stage.encode(y)
            sides.append(side)
        for (i, stage), side in zip(reversed(stages), reversed(sides)):
            where = i
            y = stage.decode(y, side)
    except (RuntimeError, ValueError, PayloadError) as exc:
        st = chain.tensor_stages[where]
        field = f"codec.{where}.{st.name}" + (".checkpoint" if "checkpoint" in st.local else "")
        value = getattr(st, "checkpoint", st.name)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(field, value, f"a stage that fits {model} at {split} (features {shape}): {first}") from None
    if tuple(y.shape[1:]) != shape:
        raise ConfigError("codec", chain.describe(), f"a chain that restores the features of {model} at {split} "
                          f"({shape}); it gives {tuple(y.shape[1:])}")


def _check_profiles(resolved: Resolved, points: Sequence[str], costs: tuple[StageCost, ...]) -> None:
    sc = resolved.scenario
    assert sc.model is not None
    m = sc.model
    for g, (group, profile) in enumerate(zip(sc.fleet, resolved.node_profiles)):
        where = f"fleet.{g}.device"
        if group.model is not None or group.codec is not None:
            continue  # checked with its own model and codec (_check_group)
        if group.head is None:
            _figure(where, profile, head_figure, profile, m.name, m.split, points)
        if group.encode is None:
            _figure(where, profile, codec_time, profile, costs, 1, 1.0, "encode")
    if m.split == "none":
        return
    server = resolved.server_profile
    if sc.server.service is None:
        _figure("server.device", server, tail_table, server, m.name, m.split)
    if sc.server.decode == Deterministic(0.0):
        _figure("server.device", server, codec_time, server, costs, 1, 1.0, "decode")


def _figure(field: str, profile: Profile, get: Callable[..., object], *args: Any) -> None:
    """Call ``get(*args)``; a missing figure becomes an error on the device field naming the profile."""
    try:
        get(*args)
    except ConfigError as exc:
        raise ConfigError(field, profile.name, f"a profile with the figures this run charges "
                          f"({exc.path}: {exc.allowed})") from None
