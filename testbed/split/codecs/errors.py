"""Errors raised while decoding a payload."""

from __future__ import annotations

from testbed.errors import TestbedError

__all__ = ["PayloadError"]


class PayloadError(TestbedError):
    """A payload that is truncated, corrupted, of another format or version, or inconsistent."""
