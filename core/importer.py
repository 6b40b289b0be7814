"""Turn a folder of chest X-rays + a label CSV into a ChestMNIST-layout npz (a usable data root).

Two CSV layouts are understood:

- NIH layout: `Image Index` and `Finding Labels` joined by `|` (`No Finding` = no positives,
  `Pleural_Thickening` = ChestMNIST's `pleural`), optional `Patient ID` and `Split`.
- Binary layout: one image-name column (`Image Index`, `image`, `file`, `filename` or `path`,
  first present wins) and one 0/1 column per ChestMNIST class; optional `Patient ID` and `Split`.

Header and finding names match case-insensitively, ignoring spaces, `_` and `-`. Fields may be
separated by commas, semicolons (as spreadsheets in many locales save "CSV") or tabs; the header
line decides which.

What goes wrong is collected and judged per kind, so one bad file never hides the others:

- fatal (`DataImportError`, nothing written): an unreadable CSV (missing, not a regular file, over
  MAX_CSV_BYTES, not parseable), missing columns, unknown finding names, label values other than
  0/1, bad `Split` values, empty image names, duplicate image names whose rows disagree, more than
  half of the rows unusable, a split left empty, or no room to write the output;
- skipped (listed in the report): images named in the CSV but not found, found under two
  subfolders, empty, unreadable, or too large to decode (over MAX_PIXELS);
- ignored (listed in the report): files in the folder that the CSV does not name, including
  non-image files; subfolders that cannot be read are named in a warning.

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

import argparse
import io
import os
import re
import stat
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from core.data import CLASS_NAMES, SIZES, SPLITS, DataError, check_size, npz_name, write_npz
from core.files import DiskFullError, atomic_write

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
# Normalised names of the image column, in order of preference when several are present.
IMAGE_COLUMNS: tuple[str, ...] = ("imageindex", "image", "file", "filename", "path")
_SPLIT_VALUES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_NO_FINDING = "nofinding"
# A label CSV is read whole into memory; NIH's full Data_Entry_2017.csv (112,120 rows) is under 8 MB.
MAX_CSV_BYTES = 128 * 2**20
# Decoded pixels allowed per image, checked from the header before decoding: a small compressed
# PNG can declare gigapixels. Digital radiographs are up to about 4300 x 4300 (18.5 M); an image
# of 40 M pixels already takes about 0.5 GB to decode and scale, in each of up to 8 threads.
MAX_PIXELS = 40_000_000
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# How many names an error message or report line shows before "and N more".
_SHOW = 5


class DataImportError(DataError):
    """The folder or CSV cannot be imported; the message says what, which files, and what to do."""


@dataclass
class ImportReport:
    """What `import_folder` wrote and what it had to leave out.

    `skipped` and `ignored_files` are (file, reason) pairs: skipped files were named in the CSV but
    could not be used; ignored files are in the folder but not named in the CSV.
    """

    path: Path
    index_path: Path
    size: int
    n_images: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    layout: str
    split_source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored_files: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_ignored(self) -> int:
        return len(self.ignored_files)

    def to_text(self) -> str:
        total = sum(self.n_images.values())
        lines = [
            f"Wrote {self.path} ({self.size}x{self.size}) and {self.index_path.name}",
            "Images: " + ", ".join(f"{s} {n:,}" for s, n in self.n_images.items())
            + f" (total {total:,}); split {self.split_source}; labels from {self.layout}",
            "Positives per class (" + "/".join(self.n_images) + "):",
        ]
        width = max(map(len, CLASS_NAMES))
        for c in CLASS_NAMES:
            lines.append(f"  {c:<{width}}  " + " / ".join(f"{self.class_counts[s][c]:>5}" for s in self.n_images))
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} image(s) named in the CSV: " + _pairs(self.skipped))
        if self.ignored_files:
            lines.append(f"Ignored {len(self.ignored_files)} file(s) in the folder: " + _pairs(self.ignored_files))
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _pairs(items: list[tuple[str, str]]) -> str:
    return _examples([f"{name} ({reason})" for name, reason in items])


def _examples(items: Sequence[str], k: int = _SHOW) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" and {len(items) - k:,} more" if len(items) > k else "")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


_FINDINGS: dict[str, int] = {_key(c): i for i, c in enumerate(CLASS_NAMES)} | {
    "pleuralthickening": CLASS_NAMES.index("pleural"),
}


class _Unusable(Exception):
    """One image cannot be used; the message is the reason shown in the report."""


# ---------------------------------------------------------------------------------------------
# The label table


@dataclass
class _Table:
    names: list[str]
    labels: np.ndarray  # (n, 14) uint8
    patients: list[str]  # "" where unknown
    splits: list[str] | None  # None: no Split column, split by patient
    layout: str
    name_column: str


def _read_csv_bytes(labels_csv: Path) -> bytes:
    """The label CSV's bytes, read only from a regular file of at most MAX_CSV_BYTES: a FIFO would
    block forever and /dev/zero never ends."""
    what = f"The label CSV {labels_csv}"
    try:
        # Non-blocking: opening a FIFO for reading otherwise waits for a writer that may never come.
        fd = os.open(labels_csv, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DataImportError(f"{what} does not exist. Check the path.") from None
    except PermissionError:
        raise DataImportError(f"{what} cannot be read by this user (permission denied). Make it readable "
                              f"(e.g. `chmod a+r {labels_csv}`) or run as the user who owns it.") from None
    except OSError as e:
        raise DataImportError(f"{what} could not be opened ({e.strerror}). Check the path.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DataImportError(f"{what} is a folder. Give the path of the CSV file itself.")
        raise DataImportError(f"{what} is not a regular file (it is a pipe, device or socket). Save the labels "
                              "to a file and give its path.")
    with open(fd, "rb") as f:
        too_big = DataImportError(
            f"{what} is larger than the {MAX_CSV_BYTES // 2**20} MB a label CSV may have (one row per image; "
            "NIH's 112,120 images take under 8 MB). Is it the right file?")
        if info.st_size > MAX_CSV_BYTES:
            raise too_big
        try:
            data = f.read(MAX_CSV_BYTES + 1)
        except OSError as e:
            raise DataImportError(f"{what} could not be read ({e.strerror}).") from None
    if len(data) > MAX_CSV_BYTES:  # it grew while being read
        raise too_big
    return data


def _delimiter(data: bytes) -> str:
    """The field separator the header line uses most (comma on a tie or none)."""
    header = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return max(_DELIMITERS, key=lambda d: (header.count(d), d == ","))


def _read_table(labels_csv: Path) -> _Table:
    data = _read_csv_bytes(labels_csv)
    sep = _delimiter(data)
    try:
        # Everything as text, so label values and IDs are judged as written ("1.0", "007").
        df = pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                         encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataImportError(f"The label CSV {labels_csv} could not be read as {_DELIMITERS[sep]}-separated CSV "
                              f"({type(e).__name__}: {e}). Save it as UTF-8 text with one header row and fields "
                              "separated by commas (semicolons or tabs also work).") from None
    if df.empty:
        raise DataImportError(f"The label CSV {labels_csv} has no data rows. Add one row per image.")
    columns = {}
    for c in df.columns:
        columns.setdefault(_key(c), c)
    # A CSV line number: pandas row 0 is line 2, after the header.
    lines = df.index.to_numpy() + 2

    name_col = next((columns[k] for k in IMAGE_COLUMNS if k in columns), None)
    if name_col is None:
        raise DataImportError(
            f"{labels_csv.name} has no image-name column; its columns are {_examples(list(map(str, df.columns)), 20)}. "
            "Name the column with the image file names `Image Index` (or image, file, filename, path).")
    names = [n.strip() for n in df[name_col]]
    empty = [str(line) for line, n in zip(lines, names) if not n]
    if empty:
        raise DataImportError(f"{labels_csv.name}: {len(empty)} row(s) have an empty `{name_col}` (lines "
                              f"{_examples(empty)}). Fill in the image file name or delete those rows.")

    if "findinglabels" in columns:
        labels = _parse_findings(df[columns["findinglabels"]], lines, labels_csv.name)
        layout = "NIH `Finding Labels`"
    else:
        labels = _parse_binary(df, columns, lines, labels_csv.name)
        layout = "one 0/1 column per class"

    patients = [p.strip() for p in df[columns["patientid"]]] if "patientid" in columns else [""] * len(df)
    splits = _parse_splits(df[columns["split"]], lines, labels_csv.name) if "split" in columns else None
    if sep != ",":
        layout += f" ({_DELIMITERS[sep]}-separated)"
    return _Table(names, labels, patients, splits, layout, name_col)


def _parse_findings(column: pd.Series, lines: np.ndarray, csv_name: str) -> np.ndarray:
    labels = np.zeros((len(column), len(CLASS_NAMES)), np.uint8)
    unknown: Counter[str] = Counter()
    bad_lines = []
    for row, cell in enumerate(column):
        tokens = [t.strip() for t in cell.split("|") if t.strip()]
        keys = [_key(t) for t in tokens]
        # "No Finding" is a claim about the whole row: blank or mixed with findings is contradictory.
        if not tokens or (_NO_FINDING in keys and len(keys) > 1):
            bad_lines.append(f"{lines[row]} ({cell!r})")
            continue
        for token, key in zip(tokens, keys):
            if key in _FINDINGS:
                labels[row, _FINDINGS[key]] = 1
            elif key != _NO_FINDING:
                unknown[token] += 1
    if unknown:
        listed = _examples([f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in unknown.most_common()], 20)
        raise DataImportError(
            f"{csv_name}: `Finding Labels` has finding names ChestMNIST does not know: {listed}. ChestMNIST's "
            f"14 classes are {', '.join(CLASS_NAMES)} (NIH's Pleural_Thickening counts as pleural) plus "
            "'No Finding'. Rename those findings to one of these, or remove the rows; they are not dropped "
            "silently because that would turn positives into negatives.")
    if bad_lines:
        raise DataImportError(
            f"{csv_name}: {len(bad_lines)} row(s) have an empty `Finding Labels` or combine 'No Finding' with "
            f"findings (lines {_examples(bad_lines)}). Write 'No Finding' for images without findings, "
            "otherwise the findings joined by '|'.")
    return labels


def _parse_binary(df: pd.DataFrame, columns: dict[str, str], lines: np.ndarray, csv_name: str) -> np.ndarray:
    have = {_FINDINGS[k] for k in columns if k in _FINDINGS}
    if not have:
        raise DataImportError(
            f"{csv_name} has neither a `Finding Labels` column (NIH layout) nor 0/1 columns named after the "
            f"ChestMNIST classes; its columns are {_examples(list(map(str, df.columns)), 20)}. Use one of the "
            f"two layouts: `Image Index` + `Finding Labels` ('Effusion|Infiltration', 'No Finding'), or an "
            f"image column + one 0/1 column for each of {', '.join(CLASS_NAMES)}.")
    missing = [c for i, c in enumerate(CLASS_NAMES) if i not in have]
    if missing:
        raise DataImportError(
            f"{csv_name} has 0/1 class columns but lacks {', '.join(missing)}. Add a 0/1 column for each "
            f"missing class (all 0 if no image has it); a missing column would read as all-negative.")
    labels = np.zeros((len(df), len(CLASS_NAMES)), np.uint8)
    bad = []
    for key, col in columns.items():
        if key not in _FINDINGS:
            continue
        values = df[col].str.strip()
        ones = values.isin(("1", "1.0")).to_numpy()
        zeros = values.isin(("0", "0.0")).to_numpy()
        labels[ones, _FINDINGS[key]] = 1
        bad += [f"line {lines[r]} {col}={values.iloc[r]!r}" for r in np.flatnonzero(~(ones | zeros))]
    if bad:
        raise DataImportError(
            f"{csv_name}: class columns must hold 0 or 1, but {len(bad)} cell(s) do not: {_examples(bad)}. "
            "Uncertain or blank labels have no ChestMNIST meaning; decide them as 0 or 1, or drop the rows.")
    return labels


def _parse_splits(column: pd.Series, lines: np.ndarray, csv_name: str) -> list[str]:
    values = [v.strip().lower() for v in column]
    bad = [f"line {lines[r]} ({column.iloc[r]!r})" for r, v in enumerate(values) if v not in _SPLIT_VALUES]
    if bad:
        raise DataImportError(
            f"{csv_name}: `Split` must be train, val (or validation) or test, but {len(bad)} row(s) say otherwise: "
            f"{_examples(bad)}. Fix those values, or delete the column to get a seeded patient-disjoint split.")
    return [_SPLIT_VALUES[v] for v in values]


def _deduplicate(table: _Table, csv_name: str) -> tuple[list[int], list[str]]:
    """Row numbers to keep (first of each name) and warnings; disagreeing duplicates are fatal."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, name in enumerate(table.names):
        rows_of[name].append(row)
    conflicts, merged = [], []
    for name, rows in rows_of.items():
        if len(rows) == 1:
            continue
        first = rows[0]
        same = all(
            np.array_equal(table.labels[r], table.labels[first])
            and table.patients[r] == table.patients[first]
            and (table.splits is None or table.splits[r] == table.splits[first])
            for r in rows[1:])
        (merged if same else conflicts).append(f"{name} (x{len(rows)})")
    if conflicts:
        raise DataImportError(
            f"{csv_name} lists {len(conflicts)} image name(s) more than once with different labels, patient or "
            f"split: {_examples(conflicts)}. Keep one correct row per image.")
    warnings = []
    if merged:
        warnings.append(f"{len(merged)} image name(s) appear in more than one identical CSV row and were imported "
                        f"once: {_examples(merged)}.")
    return [rows[0] for rows in rows_of.values()], warnings


# ---------------------------------------------------------------------------------------------
# The image folder


@dataclass
class _Folder:
    """The image folder's regular files by relative path, and what in it could not be read, with why."""

    root: Path
    files: dict[str, Path]
    unreadable: list[tuple[str, str]]

    def describe(self) -> str:
        """Sentences for an error message: what the folder holds and what could not be looked into."""
        text = (f"The folder holds {len(self.files):,} file(s), e.g. {_examples(list(self.files))}." if self.files
                else "The folder holds no files.")
        if self.unreadable:
            text += f" {_unreadable_note(self.unreadable)}"
        return text


def _unreadable_note(unreadable: list[tuple[str, str]]) -> str:
    return (f"{len(unreadable):,} folder(s) or file(s) in it could not be read: {_pairs(unreadable)}; images in "
            "them count as not found. Make them readable (e.g. `chmod -R a+rX FOLDER`) or run as their owner.")


def _scan(images_dir: Path) -> _Folder:
    """Every regular file under `images_dir` (recursively, as NIH ships images_001/images/...).

    Symlinked folders are not followed (a link back up, as under /proc, would never end). A folder
    that cannot be listed is reported, not taken as empty; files that vanish meanwhile are skipped.
    """
    found: list[Path] = []
    unreadable: list[tuple[str, str]] = []

    def rel(path: str | os.PathLike[str]) -> str:
        return Path(path).relative_to(images_dir).as_posix()

    def note(e: OSError) -> None:
        where = Path(e.filename or images_dir)
        if where == images_dir:
            raise DataImportError(f"The image folder {images_dir} cannot be read ({e.strerror}). Make it readable "
                                  "or run as its owner.")
        if not isinstance(e, FileNotFoundError):
            unreadable.append((rel(where), e.strerror or str(e)))

    for folder, _, names in os.walk(images_dir, onerror=note):
        for name in names:
            path = Path(folder) / name
            try:
                if stat.S_ISREG(path.stat().st_mode):
                    found.append(path)
            except OSError as e:
                note(e)
    return _Folder(images_dir, {rel(p): p for p in sorted(found)}, sorted(unreadable))


def _resolve(names: list[str], files: dict[str, Path]) -> tuple[list[str | None], list[str]]:
    """The folder file for each CSV name (or None) and, where None, the reason.

    A name matches a relative path exactly, else by its base name when exactly one file has it, so
    both `00000001_000.png` and `images_001/images/00000001_000.png` find the same file.
    """
    by_base: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        by_base[rel.rsplit("/", 1)[-1]].append(rel)
    found: list[str | None] = []
    reasons = []
    for name in names:
        rel = name.replace("\\", "/").removeprefix("./")
        if rel in files:
            found.append(rel)
            reasons.append("")
            continue
        candidates = by_base.get(rel.rsplit("/", 1)[-1], [])
        found.append(candidates[0] if len(candidates) == 1 else None)
        reasons.append("" if len(candidates) == 1 else
                       "file not found" if not candidates else
                       f"ambiguous: {len(candidates)} files with this name in different subfolders")
    return found, reasons


def _to_gray8(im: Image.Image) -> tuple[Image.Image, int]:
    """8-bit grayscale version of `im` and the bit depth its values were scaled from."""
    if im.mode.startswith("I"):  # I, I;16, I;16B, ...: integer data, possibly deeper than 8 bits
        a = np.asarray(im)
        if a.size and a.min() < 0:
            raise _Unusable(f"signed {im.mode} pixels with negative values")
        top = int(a.max()) if a.size else 0
        bits = max(8, top.bit_length())
        bits += bits % 2
        scaled = np.rint(a.astype(np.float64) * (255.0 / (2**bits - 1))).astype(np.uint8)
        return Image.fromarray(scaled), bits
    if im.mode == "F":
        a = np.asarray(im)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise _Unusable("floating-point pixels outside 0..1")
        return Image.fromarray(np.rint(a * 255.0).astype(np.uint8)), 8
    return im.convert("L"), 8


def _load_image(path: Path, size: int) -> tuple[np.ndarray, bool, int]:
    """(size, size) uint8 image, whether it was centre-cropped, and its source bit depth."""
    if path.stat().st_size == 0:
        raise _Unusable("empty file (0 bytes)")
    try:
        with Image.open(path) as opened:
            w, h = opened.size
            if w * h > MAX_PIXELS:
                raise _Unusable(f"too large to decode: {w} x {h} = {w * h:,} pixels, over the limit of "
                                f"{MAX_PIXELS:,}; downscale it first")
            opened.load()
            # Phone or scanner JPEGs may be stored rotated with an EXIF flag saying so.
            im = ImageOps.exif_transpose(opened)
    except _Unusable:
        raise
    except PermissionError:
        raise _Unusable("not readable by this user (permission denied); make it readable or run as its owner") \
            from None
    except Image.DecompressionBombError as e:  # PIL's own, larger limit, raised while opening
        raise _Unusable(f"too large to decode: {e}") from None
    # Corrupt files surface as many exception types (OSError, SyntaxError, zlib, struct...);
    # any of them means this one file is unusable, not that the import should stop.
    except Exception as e:
        raise _Unusable(f"unreadable image: {type(e).__name__}: {e}") from None
    gray, bits = _to_gray8(im)
    w, h = gray.size
    cropped = w != h
    if cropped:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        gray = gray.crop((left, top, left + side, top + side))
    return np.asarray(gray.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8), cropped, bits


def _load_or_reason(path: Path, size: int) -> tuple[np.ndarray, bool, int] | str:
    """`_load_image`, or the reason the image is unusable (so one bad file cannot end a pool map)."""
    try:
        return _load_image(path, size)
    except _Unusable as e:
        return str(e)


def _image_extensions() -> set[str]:
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


# ---------------------------------------------------------------------------------------------
# Splitting and writing


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or min(f) <= 0 or abs(sum(f) - 1) > 1e-6:
        raise DataImportError(f"Split fractions must be three positive numbers (train, val, test) summing to 1; "
                              f"got {fractions}.")
    return f  # type: ignore[return-value]


def _patient_split(names: list[str], patients: list[str], fractions: tuple[float, float, float],
                   seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per row; all images of a patient land in one split.

    Groups are shuffled with `seed` and filled in order, each going to the split its middle image
    falls in, so split sizes follow the fractions in images, not patients. Sorting the group keys
    first makes the split independent of the CSV's row order.
    """
    # Rows without a patient ID are their own group; the prefixes keep the two kinds of key apart.
    keys = [f"p:{p}" if p else f"i:{n}" for n, p in zip(names, patients)]
    groups, inverse, counts = np.unique(np.array(keys, dtype=object), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(groups))
    ends = np.cumsum(counts[order])
    middles = ends - counts[order] / 2
    bounds = np.cumsum(fractions) * len(names)
    split_of_group = np.empty(len(groups), np.int64)
    split_of_group[order] = np.minimum(np.searchsorted(bounds, middles, side="right"), 2)
    return split_of_group[inverse]


def import_folder(images_dir: str | Path, labels_csv: str | Path, size: int, out_dir: str | Path, *,
                  seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  on_progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Convert `images_dir` + `labels_csv` into `out_dir/npz_name(size)` plus `<stem>_index.csv`.

    The npz has medmnist's keys (`{split}_images` uint8 (N, size, size), `{split}_labels` uint8
    (N, 14)); rows keep the CSV's order within each split. The index CSV maps every row back to
    its split, index, CSV image name, file (relative to `images_dir`) and patient ID.

    Splits come from a `Split` column if present, else a seeded patient-disjoint split with
    `fractions` (train, val, test) of the images. `on_progress(done, total)` is called while images
    are decoded, about 200 times at most. Raises DataImportError for the fatal problems in the
    module docstring; an existing file of the same name is replaced only after a successful import.
    """
    images_dir, labels_csv, out_dir = Path(images_dir), Path(labels_csv), Path(out_dir)
    try:
        check_size(size)
    except DataError as e:
        raise DataImportError(str(e)) from None
    fractions = _check_fractions(fractions)
    if not images_dir.is_dir():
        raise DataImportError(f"The image folder {images_dir} does not exist or is not a folder. Check the path.")

    table = _read_table(labels_csv)
    keep, warnings = _deduplicate(table, labels_csv.name)
    names = [table.names[r] for r in keep]
    folder = _scan(images_dir)
    files = folder.files
    found, reasons = _resolve(names, files)
    skipped = [(n, why) for n, why in zip(names, reasons) if why]
    _check_usable(len(skipped), len(names), skipped, folder, labels_csv, table.name_column)
    if folder.unreadable:
        warnings.append(_unreadable_note(folder.unreadable))

    used = {rel for rel in found if rel is not None}
    extensions = _image_extensions()
    ignored = [(rel, "not named in the CSV" if Path(rel).suffix.lower() in extensions else "not an image file")
               for rel in files if rel not in used]

    todo = [i for i, rel in enumerate(found) if rel is not None]
    images = np.zeros((len(names), size, size), np.uint8)
    ok = np.zeros(len(names), bool)
    n_cropped = 0
    depths: Counter[int] = Counter()
    step = max(1, len(todo) // 200)
    # PIL decodes and resizes with the GIL released, so threads scale with cores (1.9x on 2 cores
    # for 1024 px PNGs); map keeps CSV order. Cancelling on exit stops the work if on_progress raises.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        results = pool.map(lambda i: _load_or_reason(files[found[i]], size), todo)
        for done, (i, result) in enumerate(zip(todo, results), 1):
            if isinstance(result, str):
                skipped.append((names[i], result))
            else:
                images[i], cropped, bits = result
                ok[i] = True
                n_cropped += cropped
                depths[bits] += 1
            if on_progress and (done % step == 0 or done == len(todo)):
                on_progress(done, len(todo))
    finally:
        pool.shutdown(cancel_futures=True)
    _check_usable(len(skipped), len(names), skipped, folder, labels_csv, table.name_column)

    rows = np.array(keep)[ok]
    labels = table.labels[rows]
    patients = [table.patients[r] for r in rows]
    kept_names = [names[i] for i in np.flatnonzero(ok)]
    kept_files = [found[i] for i in np.flatnonzero(ok)]
    if table.splits is None:
        split_idx = _patient_split(kept_names, patients, fractions, seed)
        split_source = ("patient-disjoint by `Patient ID`" if any(patients) else "by image (no `Patient ID` column)") \
            + f", seed {seed}, fractions {'/'.join(f'{f:g}' for f in fractions)}"
    else:
        split_idx = np.array([SPLITS.index(table.splits[r]) for r in rows])
        split_source = "from the `Split` column"
        warnings += _leak_warning(patients, split_idx)
    empty = [s for k, s in enumerate(SPLITS) if not (split_idx == k).any()]
    if empty:
        raise DataImportError(
            f"After skipping unusable images, {len(rows)} image(s) remain and the {' and '.join(empty)} split(s) "
            f"would be empty ({split_source}). Every split needs images: add images"
            + (", or assign some rows to those splits in the `Split` column." if table.splits is not None else
               ", or change the fractions (a patient's images all go to one split, so few patients limit this)."))

    if n_cropped:
        warnings.append(f"{n_cropped} non-square image(s) were centre-cropped to a square before resizing.")
    deep = {b: n for b, n in sorted(depths.items()) if b > 8}
    if deep:
        warnings.append("Images deeper than 8 bits were scaled by the range of their bit depth (inferred from "
                        "each image's maximum): " + ", ".join(f"{n} at {b}-bit" for b, n in deep.items()) + ".")

    arrays: dict[str, np.ndarray] = {}
    index_rows = []
    for k, s in enumerate(SPLITS):
        sel = np.flatnonzero(split_idx == k)
        arrays[f"{s}_images"] = images[np.flatnonzero(ok)[sel]]
        arrays[f"{s}_labels"] = labels[sel]
        index_rows += [(s, j, kept_names[r], kept_files[r], patients[r]) for j, r in enumerate(sel)]

    path = out_dir / npz_name(size)
    index_path = out_dir / f"{path.stem}_index.csv"
    if path.exists():
        warnings.append(f"Replaced the existing {path}.")
    index = pd.DataFrame(index_rows, columns=["split", "index", "image", "file", "patient_id"])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # The large npz first: a full disk then stops the import before either file is replaced.
        write_npz(out_dir, size, {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS})
        atomic_write(index_path, lambda f: index.to_csv(f, index=False))
    except DiskFullError as e:
        raise DataImportError(str(e)) from None
    except OSError as e:
        raise DataImportError(f"Could not write to {out_dir} ({e.strerror or e}). Choose a writable output folder "
                              "with enough free space.") from None

    return ImportReport(
        path=path, index_path=index_path, size=size,
        n_images={s: len(arrays[f"{s}_labels"]) for s in SPLITS},
        class_counts={s: dict(zip(CLASS_NAMES, arrays[f"{s}_labels"].sum(axis=0).tolist())) for s in SPLITS},
        layout=table.layout, split_source=split_source, skipped=skipped, ignored_files=ignored, warnings=warnings)


def _check_usable(n_bad: int, n_rows: int, skipped: list[tuple[str, str]], folder: _Folder, labels_csv: Path,
                  name_column: str) -> None:
    """Fatal when more than half of the CSV's images are unusable: that is a wrong folder or CSV,
    or names that do not match the files, rather than a few bad files."""
    if n_bad * 2 <= n_rows and n_bad < n_rows:
        return
    raise DataImportError(
        f"{n_bad:,} of the {n_rows:,} images named in {labels_csv.name} cannot be used: {_pairs(skipped)}. "
        f"{folder.describe()} More than half unusable usually means the wrong folder or CSV, or `{name_column}` "
        f"values that do not match the file names (check extensions and subfolders) under {folder.root}.")


def _leak_warning(patients: list[str], split_idx: np.ndarray) -> list[str]:
    splits_of: dict[str, set[int]] = defaultdict(set)
    for p, k in zip(patients, split_idx):
        if p:
            splits_of[p].add(int(k))
    leaked = sorted(p for p, ks in splits_of.items() if len(ks) > 1)
    if not leaked:
        return []
    return [f"{len(leaked)} patient(s) have images in more than one split of the `Split` column "
            f"(e.g. {_examples(leaked)}); test metrics will be optimistic."]


# ---------------------------------------------------------------------------------------------
# Command line


def _fractions_arg(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m core.data import-folder IMAGES_DIR LABELS.csv --size 64 --out DIR [--seed 0]`.

    Prints the report and returns 0; on a DataImportError prints its message to stderr and returns 2.
    """
    p = argparse.ArgumentParser(
        prog="python -m core.data import-folder",
        description="Convert a folder of chest X-rays and a label CSV into a ChestMNIST-layout npz.")
    p.add_argument("images_dir", type=Path)
    p.add_argument("labels_csv", type=Path)
    p.add_argument("--size", type=int, required=True, choices=SIZES)
    p.add_argument("--out", type=Path, required=True, help="output folder, usable as a data root")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-disjoint split (no Split column)")
    p.add_argument("--fractions", type=_fractions_arg, default=DEFAULT_FRACTIONS,
                   help="train,val,test fractions of the images (default 0.7,0.1,0.2)")
    args = p.parse_args(argv)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="img", desc="decoding", file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        report = import_folder(args.images_dir, args.labels_csv, args.size, args.out, seed=args.seed,
                               fractions=args.fractions, on_progress=progress)
    except DataImportError as e:
        print(f"import-folder: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(report.to_text())
    return 0
