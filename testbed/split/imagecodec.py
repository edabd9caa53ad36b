"""Encode captured frames (uint8 pixels) as raw bytes, PNG or JPEG with Pillow: the 'send the input'
baseline of split computing."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["IMAGE_FORMATS", "decode_image", "encode_image"]

IMAGE_FORMATS = ("raw", "png", "jpeg")


def encode_image(chw: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """uint8 [3, H, W] -> bytes (``raw`` is the pixels in CHW order)."""
    if fmt == "raw":
        return np.ascontiguousarray(chw, dtype=np.uint8).tobytes()
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)))
    if fmt == "png":
        img.save(buf, format="PNG")
    elif fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r}; use one of {', '.join(IMAGE_FORMATS)}")
    return buf.getvalue()


def decode_image(data: bytes, fmt: str, shape: tuple[int, int, int]) -> np.ndarray:
    """bytes -> uint8 [3, H, W]."""
    if fmt == "raw":
        return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).transpose(2, 0, 1).copy()
