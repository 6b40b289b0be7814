"""A user's image file (a path, or an upload's bytes) read as each run's input, or the reason it cannot be.

The pixels go through core.data.pixels, the importer's own steps (8-bit grayscale, centre crop to a
square, PIL bicubic to the run's size), so a model sees a user's image as it saw its training data.
What those steps changed about an image (colour or CMYK dropped, 16-bit values scaled, a crop) is
said in its notes. DICOM files are read where the optional pydicom is installed.
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from core.data.pixels import Unusable, image_extensions, open_image, to_size

# An upload or file larger than this is refused before it is decoded: a radiograph PNG is a few MB,
# a DICOM tens of MB; MAX_PIXELS (core.data.pixels) bounds the decoded size as well.
MAX_BYTES = 64 * 1024 * 1024
DICOM_SUFFIXES = (".dcm", ".dicom")
_COLOUR_NOTES = {"CMYK": "CMYK converted to grayscale", "RGB": "colour converted to grayscale (ITU-R 601 luma)",
                 "RGBA": "colour converted to grayscale, transparency dropped",
                 "LA": "transparency dropped", "P": "palette image converted to grayscale"}


def dicom_supported() -> bool:
    """Whether DICOM files can be read here (the optional pydicom package is installed)."""
    return importlib.util.find_spec("pydicom") is not None


def accepted_suffixes() -> list[str]:
    """File endings offered for upload: PNG and JPEG, and DICOM where pydicom is installed."""
    return [".png", ".jpg", ".jpeg"] + (list(DICOM_SUFFIXES) if dicom_supported() else [])


@dataclass(frozen=True)
class InputImage:
    """One decoded image, not yet resized: `at(size)` is what a run of that size gets."""

    name: str
    image: Image.Image
    notes: tuple[str, ...]

    def at(self, size: int) -> np.ndarray:
        """(size, size) uint8, made as core.data.pixels makes a training image (a writable copy: torch
        warns on read-only arrays)."""
        return np.array(to_size(self.image, size)[0])


def _is_dicom(name: str, data: bytes) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _read_dicom(data: bytes) -> Image.Image:
    """The pixels of a single-frame grayscale DICOM as a PIL image (MONOCHROME1 inverted so bone is bright)."""
    if not dicom_supported():
        raise Unusable("a DICOM file, and the optional pydicom package is not installed; `pip install pydicom`, "
                       "or save the image as a PNG")
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        a = np.asarray(ds.pixel_array)
    except Exception as e:  # pydicom raises many types for corrupt or compressed data it cannot decode
        raise Unusable(f"unreadable DICOM: {type(e).__name__}: {str(e)[:200]}") from None
    if a.ndim != 2:
        raise Unusable(f"a DICOM with pixel array shape {a.shape}; only single-frame grayscale images are used")
    if a.dtype.kind not in "ui" or (a.size and a.min() < 0):
        raise Unusable(f"a DICOM with {a.dtype} pixels{' below 0' if a.dtype.kind == 'i' else ''}; "
                       "export it as an 8- or 16-bit PNG")
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        a = a.max() - a
    return Image.fromarray(a.astype(np.uint16 if a.max() > 255 else np.uint8))


def read_image(name: str, source: bytes | Path) -> InputImage:
    """The image in `source` (a file, or the bytes of an upload called `name`), or Unusable with the reason:
    empty, over MAX_BYTES, not an image, truncated or corrupt, animated, too many pixels, signed pixels."""
    n_bytes = source.stat().st_size if isinstance(source, Path) else len(source)
    if n_bytes > MAX_BYTES:
        raise Unusable(f"{n_bytes / 2**20:,.0f} MB, over the limit of {MAX_BYTES // 2**20} MB; downscale it first")
    data = source.read_bytes() if isinstance(source, Path) else source
    im = _read_dicom(data) if _is_dicom(name, data) else open_image(data, single_frame=True)
    try:
        _, cropped, bits = to_size(im, 8)  # checks the values now, and says what conversion does
    except ValueError as e:  # PIL refuses modes it cannot convert to grayscale
        raise Unusable(f"pixels in mode {im.mode} cannot be made grayscale ({e})") from None
    w, h = im.size
    notes = [f"{w} x {h} px, {im.mode}"]
    if im.mode in _COLOUR_NOTES:
        notes.append(_COLOUR_NOTES[im.mode])
    if bits > 8:
        notes.append(f"{bits}-bit values scaled to 8 bits by the full {bits}-bit range, as the importer does")
    if cropped:
        notes.append(f"not square: centre-cropped to {min(w, h)} x {min(w, h)} before resizing")
    return InputImage(name, im, tuple(notes))


def read_or_reason(name: str, source: bytes | Path) -> InputImage | str:
    """`read_image`, or the reason the image is unusable (so one bad file cannot stop the others)."""
    try:
        return read_image(name, source)
    except Unusable as e:
        return str(e)
    except OSError as e:  # a file that vanished or cannot be read
        return f"cannot be read ({e.strerror or e})"


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files named, and the image files under the folders named (recursively, sorted); a FileNotFoundError
    names a path that does not exist."""
    suffixes = image_extensions() | set(DICOM_SUFFIXES)
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return out
