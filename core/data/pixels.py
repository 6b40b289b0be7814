"""One image file in, one (size, size) uint8 ChestMNIST-style image out, or the reason it cannot be used.

Pixel handling, chosen to match how medmnist built ChestMNIST from the NIH PNGs:

- any mode becomes 8-bit grayscale (colour by ITU-R 601 luma, alpha dropped, EXIF rotation
  applied); integer images deeper than 8 bits are scaled by the full range of their bit depth,
  taken as the smallest even depth >= 8 that holds the image's maximum, because 10-16 bit detector
  data is usually stored in 16-bit containers without saying how many bits are real;
- non-square images are centre-cropped to a square (NIH images are square already): padding would
  add borders ChestMNIST never has and stretching would distort the anatomy;
- the square is resized to `size` with PIL bicubic, as medmnist did.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Decoded pixels allowed per image, checked from the header before decoding: a small compressed
# PNG can declare gigapixels. Digital radiographs are up to about 4300 x 4300 (18.5 M); an image
# of 40 M pixels already takes about 0.5 GB to decode and scale, in each of up to 8 threads.
MAX_PIXELS = 40_000_000


class Unusable(Exception):
    """One image cannot be used; the message is the reason shown in the report."""


def _to_gray8(im: Image.Image) -> tuple[Image.Image, int]:
    """8-bit grayscale version of `im` and the bit depth its values were scaled from."""
    if im.mode.startswith("I"):  # I, I;16, I;16B, ...: integer data, possibly deeper than 8 bits
        a = np.asarray(im)
        if a.size and a.min() < 0:
            raise Unusable(f"signed {im.mode} pixels with negative values")
        top = int(a.max()) if a.size else 0
        bits = max(8, top.bit_length())
        bits += bits % 2
        scaled = np.rint(a.astype(np.float64) * (255.0 / (2**bits - 1))).astype(np.uint8)
        return Image.fromarray(scaled), bits
    if im.mode == "F":
        a = np.asarray(im)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise Unusable("floating-point pixels outside 0..1")
        return Image.fromarray(np.rint(a * 255.0).astype(np.uint8)), 8
    return im.convert("L"), 8


def open_image(source: Path | bytes, single_frame: bool = False) -> Image.Image:
    """The decoded image in a file or in the bytes of one (an upload), EXIF rotation applied; Unusable
    with the reason otherwise. `single_frame` refuses an animated or multi-page image (GIF, APNG, TIFF),
    whose first frame would otherwise be taken without a word."""
    if (source.stat().st_size if isinstance(source, Path) else len(source)) == 0:
        raise Unusable("empty file (0 bytes)")
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as opened:
            w, h = opened.size
            if w * h > MAX_PIXELS:
                raise Unusable(f"too large to decode: {w} x {h} = {w * h:,} pixels, over the limit of "
                                f"{MAX_PIXELS:,}; downscale it first")
            frames = getattr(opened, "n_frames", 1)
            if single_frame and frames > 1:
                raise Unusable(f"an animated or multi-page image ({frames} frames); save the one radiograph "
                               "as a PNG or JPEG")
            opened.load()
            # Phone or scanner JPEGs may be stored rotated with an EXIF flag saying so.
            return ImageOps.exif_transpose(opened)
    except Unusable:
        raise
    except PermissionError:
        raise Unusable("not readable by this user (permission denied); make it readable or run as its owner") \
            from None
    except Image.DecompressionBombError as e:  # PIL's own, larger limit, raised while opening
        raise Unusable(f"too large to decode: {e}") from None
    except UnidentifiedImageError:  # its message names a file object, not the file
        raise Unusable("unreadable image: not a format PIL can read (PNG, JPEG, TIFF, ...)") from None
    # Corrupt files surface as many exception types (OSError, SyntaxError, zlib, struct...);
    # any of them means this one file is unusable, not that the import should stop.
    except Exception as e:
        raise Unusable(f"unreadable image: {type(e).__name__}: {e}") from None


def to_size(im: Image.Image, size: int) -> tuple[np.ndarray, bool, int]:
    """(size, size) uint8 image made from `im` as the module docstring says, whether it was
    centre-cropped, and the bit depth its values were scaled from."""
    gray, bits = _to_gray8(im)
    w, h = gray.size
    cropped = w != h
    if cropped:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        gray = gray.crop((left, top, left + side, top + side))
    return np.asarray(gray.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8), cropped, bits


def _load_image(path: Path, size: int) -> tuple[np.ndarray, bool, int]:
    """(size, size) uint8 image, whether it was centre-cropped, and its source bit depth."""
    return to_size(open_image(path), size)


def load_or_reason(path: Path, size: int) -> tuple[np.ndarray, bool, int] | str:
    """`_load_image`, or the reason the image is unusable (so one bad file cannot end a pool map)."""
    try:
        return _load_image(path, size)
    except Unusable as e:
        return str(e)


def image_extensions() -> set[str]:
    """File name endings PIL can open (".png", ".jpg", ...)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
