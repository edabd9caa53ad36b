"""One generic registry for every pluggable kind: duplicate names refused, unknown names listed."""

from __future__ import annotations

from typing import get_args

import pytest

from testbed.errors import ConfigError
from testbed.registry import Registry


def test_duplicates_refused_unknown_names_list_the_available() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.register("a")(1)
    assert reg.names() == ("a", "b") and [n for n, _ in reg.items()] == ["b", "a"]  # items: registration order
    assert "a" in reg and len(reg) == 2 and reg.get("a") == 1
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)
    with pytest.raises(ConfigError, match=r"^x\.kind: got 'c'; a known widget: a, b$"):
        reg.get("c", "x.kind")


def test_every_pluggable_kind_uses_the_generic_registry() -> None:
    import testbed.research  # noqa: F401  (registers the research methods and their stages)
    from testbed.core.arrivals import ARRIVALS
    from testbed.core.metrics import SUMMARY_METRICS
    from testbed.dists import DISTS
    from testbed.research.registry import METHODS
    from testbed.sim.links import LINKS
    from testbed.split.codecs.base import CODECS
    from testbed.split.data.datasets import DATASETS
    from testbed.split.models.registry import MODELS

    for reg in (ARRIVALS, SUMMARY_METRICS, DISTS, METHODS, LINKS, CODECS, DATASETS, MODELS):
        assert isinstance(reg, Registry) and len(reg) > 0
    assert {"periodic", "poisson", "trace"} == set(ARRIVALS.names())
    assert {"autoencoder", "qcnet", "softquant", "augq", "nestquant"} <= set(METHODS.names())
    assert {"quantize", "lzma", "autoencoder", "qcnet"} <= set(CODECS.names())


def test_arrival_kinds_the_schema_accepts_are_the_registered_ones() -> None:
    from testbed.config.schema import Arrivals
    from testbed.core.arrivals import ARRIVALS

    assert set(get_args(Arrivals.model_fields["kind"].annotation)) == set(ARRIVALS.names())


def test_an_unknown_dist_lists_the_registered_ones() -> None:
    from testbed.dists import DISTS, parse_dist

    with pytest.raises(ValueError, match="dist must be one of deterministic, exponential, uniform"):
        parse_dist({"dist": "weibull", "shape": 2})
    assert parse_dist({"dist": "uniform", "low": "1 ms", "high": "3 ms"}).mean() == pytest.approx(0.002)
    assert "weibull" not in DISTS
