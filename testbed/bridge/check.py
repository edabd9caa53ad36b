"""Model-side checks of a resolved scenario: what ``testbed validate`` adds to the schema.

The schema (:mod:`testbed.config.schema`) cannot know model names, split points or codec stages
(they live on the model side, which imports torch); these checks run in ``validate`` and before a
run, so a scenario that validates does not fail at run time on its model section.
"""

from __future__ import annotations

from testbed.bridge.cache import image_codec
from testbed.config.resolve import Resolved
from testbed.errors import ConfigError

__all__ = ["check_model"]


def check_model(resolved: Resolved) -> None:
    """Raise :class:`ConfigError` naming the field when the model section cannot run."""
    sc = resolved.scenario
    if sc.model is None:
        return
    from testbed.split.models import get_spec

    try:
        get_spec(sc.model.name, "model.name").check_point(sc.model.split, "model.split")
    except ConfigError as exc:
        raise exc from None
    if sc.codec and image_codec(sc.codec) is None:
        from testbed.split.codecs import parse_chain

        parse_chain(list(sc.codec), "codec")
