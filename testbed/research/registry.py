"""The registry of research methods: what ``testbed train`` and ``testbed research-eval`` loop over.

A research method registers, in its own module under :mod:`testbed.research.methods`, one
:class:`Method`: its training/calibration entry and CLI options, its research-eval rows and the
codec stages it brings (registered in the codec registry by the same module; a stage declares its
own compute cost and, when it has one, its fine-tuned tail). Adding a method is one new module
that calls :func:`register_method`. This module is torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from testbed.errors import ConfigError
from testbed.registry import Registry
from testbed.research.options import TrainOptions

if TYPE_CHECKING:
    from testbed.research.measure import EvalContext, Row
    from testbed.split.codecs import Stage

__all__ = ["METHODS", "Method", "Option", "TrainOptions", "register_method"]

_TYPES: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class Option:
    """A method-specific option of ``testbed train METHOD`` (``name`` becomes ``--name-with-dashes``)."""

    name: str
    type: type
    default: Any
    help: str

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"option {self.name}: type {self.type.__name__} is not bool, int, float or str")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


TrainFn = Callable[[TrainOptions, Mapping[str, Any], Any], dict[str, Any]]
RowsFn = Callable[["EvalContext"], list["Row"]]


@dataclass(frozen=True)
class Method:
    """One research method.

    ``train(opts, params, device)`` writes ``opts.out`` and returns the summary printed by
    ``testbed train`` (``params``: this method's :attr:`options` by name, defaults filled in);
    ``eval_rows(ctx)`` trains/calibrates and measures the method's rows of ``testbed research-eval``
    (None: no rows); ``stages`` are its codec stage classes; ``order`` places its rows in the tables
    (baselines first).
    """

    name: str
    title: str
    train: TrainFn
    options: tuple[Option, ...] = ()
    eval_rows: RowsFn | None = None
    stages: tuple[type[Stage], ...] = ()
    order: int = 100

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """This method's option values: ``given`` over the defaults; an option of no use to this
        method is a :class:`ConfigError` naming it and listing the method's options."""
        known = {o.name: o for o in self.options}
        for name, value in given.items():
            if name not in known:
                flags = ", ".join(o.flag for o in self.options) or "none"
                raise ConfigError("--" + name.replace("_", "-"), value, f"an option of {self.name} ({flags})")
        return {name: given.get(name, o.default) for name, o in known.items()}


METHODS: Registry[Method] = Registry("research method")


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a duplicate name is an error)."""
    return METHODS.add(method.name, method)
