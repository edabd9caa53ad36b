"""Property-based tests (hypothesis, fixed budget, derandomized): hostile scenario dictionaries and
hostile payload bytes end in a valid result or the one user-facing error, never another exception."""

from __future__ import annotations

import copy
import struct
import tracemalloc
import zlib
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.config.load import apply_overrides, scenario_from_dict
from testbed.errors import ConfigError
from testbed.run.prepare import prepare_dict
from testbed.split.codecs import PayloadError, decode_payloads, parse_chain
from tests.conftest import ROOT, base_scenario

BUDGET = settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- scenario dictionaries -------------------------------------------------------------------------

_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["1 ms", "-5 ms", "1e400 s", "2/s", "nan", "inf", "5 MB/s", "x", "", "poisson", "trace",
                     "lognormal", "1 KiB", ".inf", "²", "periodic"]),
)
_VALUE = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["dist", "mean", "rate", "sigma", "median", "values", "low", "high", "kind", "jitter", "file", "x"]),
        inner, max_size=4)), max_leaves=10)


def _paths(node: Any, prefix: str = "") -> list[str]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, f"{prefix}.{i}" if prefix else str(i))
    return out


_BASE = base_scenario()
_BASE["fleet"][0]["arrivals"] = {"kind": "periodic", "rate": "1/s", "jitter": "5 ms"}
_BASE["fleet"][0]["head"] = {"dist": "lognormal", "median": "10 ms", "sigma": 0.1}
_BASE["fleet"][0]["encode"] = {"dist": "empirical", "values": ["1 ms", "2 ms"]}
_BASE["fleet"].append({"name": "b", "count": 2, "device": "pi4b", "arrivals": {"kind": "poisson", "rate": "2/s"},
                       "head": {"dist": "exponential", "mean": "3 ms"}, "payload": "5 kB"})
_PATHS = sorted(set(_paths(_BASE)))


def _delete(raw: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node.pop(int(last))
    else:
        node.pop(last, None)


_MUTATION = st.tuples(st.sampled_from(["set", "delete", "add"]), st.sampled_from(_PATHS), _VALUE)


@BUDGET
@given(st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_scenarios_validate_or_raise_config_error(mutations: list[tuple[str, str, Any]]) -> None:
    raw = copy.deepcopy(_BASE)
    for op, path, value in mutations:
        try:
            if op == "delete":
                _delete(raw, path)
            else:
                raw = apply_overrides(raw, {path if op == "set" else f"{path}.extra": value})
        except (KeyError, IndexError, AttributeError, TypeError):
            continue  # the path no longer exists after an earlier mutation: not what is tested here
        except ConfigError:
            continue  # an override into a scalar is refused: fine
    try:
        sc = scenario_from_dict(raw)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1200
        return
    try:
        prepare_dict(raw, ROOT / "scenarios")  # resolve (profiles) and check (memory, link model)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1200
        return
    assert sc.node_count >= 1


@BUDGET
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _LEAF), min_size=1, max_size=3))
def test_overrides_with_any_value_validate_or_raise_config_error(pairs: list[tuple[str, Any]]) -> None:
    try:
        scenario_from_dict(apply_overrides(_BASE, [f"{p}={v}" for p, v in pairs]))
    except ConfigError as exc:
        assert "\n" not in str(exc)


# -- payload bytes ---------------------------------------------------------------------------------

SHAPE = (8, 6, 5)
_CHAINS = ["float32", "float16,zstd", "quantize:bits=1,lzma:preset=1", "quantize:bits=5,granularity=channel,zlib",
           "binarize,zstd:level=5", "quantize:bits=8,clip=percentile,lzma"]
_X = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(0))
_PAYLOADS = {spec: parse_chain(spec).encode(_X)[0] for spec in _CHAINS}
_LIMIT = 4 * 8 * 6 * 5 * 16 + (2 << 20)  # a few copies of the expected tensor, plus interpreter noise


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("cut"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
)


@BUDGET
@given(st.sampled_from(_CHAINS), st.lists(_EDIT, min_size=1, max_size=4), st.booleans())
def test_damaged_payloads_decode_to_the_expected_shape_or_raise_payload_error(
        spec: str, edits: list[tuple[str, int, int]], reseal: bool) -> None:
    data = bytearray(_PAYLOADS[spec][:-4] if reseal else _PAYLOADS[spec])
    for op, pos, arg in edits:
        if not data:
            break
        i = pos % len(data)
        if op == "flip":
            data[i] ^= arg
        elif op == "cut":
            del data[i:]
        else:
            data.insert(i, arg)
    payload = _reseal(bytes(data)) if reseal else bytes(data)
    _decode_bounded(payload, spec)


@BUDGET
@given(st.sampled_from(_CHAINS), st.binary(max_size=600))
def test_random_bytes_never_decode_to_anything_else(spec: str, junk: bytes) -> None:
    _decode_bounded(junk, spec)
    _decode_bounded(_reseal(b"TBFM\x01" + junk), spec)


def _decode_bounded(payload: bytes, spec: str) -> None:
    tracemalloc.start()
    try:
        out = decode_payloads([payload], parse_chain(spec), SHAPE)
        assert tuple(out.shape) == (1, *SHAPE)
    except PayloadError as exc:
        assert "\n" not in str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < _LIMIT, peak
