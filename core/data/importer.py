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

- fatal (`DataImportError`, nothing written): an output folder inside the bundled demo, an existing
  file of the same size without `replace`, or one a run was trained on; an unreadable CSV (missing, not a regular file, over
  MAX_CSV_BYTES, not parseable), missing columns, unknown finding names, label values other than
  0/1, bad `Split` values, empty image names, duplicate image names whose rows disagree, more than
  half of the rows unusable, a split left empty, or no room to write the output;
- skipped (listed in the report): images named in the CSV but not found, found under two
  subfolders, named by several rows (one file never gets several labels), empty, unreadable, or too
  large to decode (over MAX_PIXELS);
- ignored (listed in the report): files in the folder that the CSV does not name, including
  non-image files; subfolders that cannot be read are named in a warning.

Pixels are decoded as core.data.pixels describes (as medmnist built ChestMNIST from the NIH PNGs).
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.data.chestmnist import (CLASS_NAMES, SIZES, SPLITS, DataError, check_size, DEMO_ROOT, file_md5, npz_name,
                                  write_npz)
from core.files import DiskFullError, atomic_write
from core.data.pixels import image_extensions, load_or_reason
from core.data.table import DataImportError, Table, deduplicate, examples, read_table
from core.runs.folder import runs_on_data

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
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
    return examples([f"{name} ({reason})" for name, reason in items])


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
        text = (f"The folder holds {len(self.files):,} file(s), e.g. {examples(list(self.files))}." if self.files
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
    # Rows that differ by name but reach one file (p1/x.png .. p70/x.png, all by base name onto the only
    # x.png) would import one image under many labels and patients: none of them is trusted.
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, rel in enumerate(found):
        if rel is not None:
            rows_of[rel].append(i)
    for rel, rows in rows_of.items():
        for i in rows if len(rows) > 1 else ():
            found[i] = None
            reasons[i] = f"{len(rows)} rows of the CSV name this one file ({rel}); which labels are its is unclear"
    return found, reasons


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


def _decode(files: dict[str, Path], found: list[str | None], names: list[str], size: int,
            skipped: list[tuple[str, str]], on_progress: Callable[[int, int], None] | None
            ) -> tuple[np.ndarray, np.ndarray, int, Counter[int]]:
    """(images (n, size, size) uint8, usable (n,) bool, centre-cropped count, bit depths) of the
    CSV's images; unusable ones are appended to `skipped` with their reason."""
    todo = [i for i, rel in enumerate(found) if rel is not None]
    images = np.zeros((len(names), size, size), np.uint8)
    ok = np.zeros(len(names), bool)
    n_cropped = 0
    depths: Counter[int] = Counter()
    step = max(1, len(todo) // 200)
    # PIL decodes and resizes with the GIL released, so threads scale with cores; map keeps CSV order. Cancelling on exit stops the work if on_progress raises.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        results = pool.map(lambda i: load_or_reason(files[found[i]], size), todo)
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
    return images, ok, n_cropped, depths


def _assign_splits(table: Table, rows: np.ndarray, names: list[str], patients: list[str],
                   fractions: tuple[float, float, float], seed: int, warnings: list[str]) -> tuple[np.ndarray, str]:
    """(split index 0/1/2 per kept row, how the split was made): the CSV's Split column, else a seeded
    patient-disjoint split; DataImportError when a split would be empty."""
    if table.splits is None:
        split_idx = _patient_split(names, patients, fractions, seed)
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
    return split_idx, split_source


def default_out_dir() -> Path:
    """A new folder for an import when none is chosen: never the data root, whose files runs were trained on."""
    return Path.home() / "chestmnist-imports" / time.strftime("%Y%m%d-%H%M%S")


def _check_target(out_dir: Path, size: int, replace: bool, runs_dir: str | Path | None) -> None:
    """DataImportError, before any image is decoded, when the import would write into the bundled demo,
    replace a file without `replace`, or replace a file a run in `runs_dir` was trained on (that run
    could then never resume or be evaluated again)."""
    where = out_dir.expanduser().resolve()
    if DEMO_ROOT.resolve() in (where, *where.parents):
        raise DataImportError(f"{out_dir} is the bundled demo folder; imports never write there. Choose a new "
                              "output folder.")
    path = out_dir / npz_name(size)
    if not path.exists():
        return
    if not replace:
        raise DataImportError(f"{path} exists already, and an import never replaces a data file unless asked. "
                              "Choose a new output folder, or ask to replace it (--replace; the old file is kept "
                              "beside it, renamed).")
    users = runs_on_data(runs_dir, path, file_md5(path))
    if users:
        raise DataImportError(f"{path} is the data of {len(users)} run(s) (e.g. {examples(users)}): replaced, they "
                              "could no longer resume or be evaluated. Choose a new output folder.")


def import_folder(images_dir: str | Path, labels_csv: str | Path, size: int, out_dir: str | Path, *,
                  seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  on_progress: Callable[[int, int], None] | None = None, replace: bool = False,
                  runs_dir: str | Path | None = None) -> ImportReport:
    """Convert `images_dir` + `labels_csv` into `out_dir/npz_name(size)` plus `<stem>_index.csv`.

    The npz has medmnist's keys (`{split}_images` uint8 (N, size, size), `{split}_labels` uint8
    (N, 14)); rows keep the CSV's order within each split. The index CSV maps every row back to
    its split, index, CSV image name, file (relative to `images_dir`) and patient ID.

    Splits come from a `Split` column if present, else a seeded patient-disjoint split with
    `fractions` (train, val, test) of the images. `on_progress(done, total)` is called while images
    are decoded, about 200 times at most. Raises DataImportError for the fatal problems in the
    module docstring. An existing file of the same name is refused unless `replace` (and then only when no
    run in `runs_dir`, default the usual runs folder, was trained on it); it is kept, renamed, after a
    successful import. Nothing is ever written into the bundled demo folder.
    """
    images_dir, labels_csv, out_dir = Path(images_dir), Path(labels_csv), Path(out_dir)
    try:
        check_size(size)
    except DataError as e:
        raise DataImportError(str(e)) from None
    fractions = _check_fractions(fractions)
    if not images_dir.is_dir():
        raise DataImportError(f"The image folder {images_dir} does not exist or is not a folder. Check the path.")
    _check_target(out_dir, size, replace, runs_dir)

    table = read_table(labels_csv)
    keep, warnings = deduplicate(table, labels_csv.name)
    names = [table.names[r] for r in keep]
    folder = _scan(images_dir)
    files = folder.files
    found, reasons = _resolve(names, files)
    skipped = [(n, why) for n, why in zip(names, reasons) if why]
    _check_usable(len(skipped), len(names), skipped, folder, labels_csv, table.name_column)
    if folder.unreadable:
        warnings.append(_unreadable_note(folder.unreadable))

    used = {rel for rel in found if rel is not None}
    extensions = image_extensions()
    ignored = [(rel, "not named in the CSV" if Path(rel).suffix.lower() in extensions else "not an image file")
               for rel in files if rel not in used]

    images, ok, n_cropped, depths = _decode(files, found, names, size, skipped, on_progress)
    _check_usable(len(skipped), len(names), skipped, folder, labels_csv, table.name_column)

    rows = np.array(keep)[ok]
    labels = table.labels[rows]
    patients = [table.patients[r] for r in rows]
    kept_names = [names[i] for i in np.flatnonzero(ok)]
    kept_files = [found[i] for i in np.flatnonzero(ok)]
    split_idx, split_source = _assign_splits(table, rows, kept_names, patients, fractions, seed, warnings)

    warnings += _decode_notes(n_cropped, depths)

    arrays: dict[str, np.ndarray] = {}
    index_rows = []
    for k, s in enumerate(SPLITS):
        sel = np.flatnonzero(split_idx == k)
        arrays[f"{s}_images"] = images[np.flatnonzero(ok)[sel]]
        arrays[f"{s}_labels"] = labels[sel]
        index_rows += [(s, j, kept_names[r], kept_files[r], patients[r]) for j, r in enumerate(sel)]

    path, index_path = _write(out_dir, size, arrays, index_rows, warnings)
    return ImportReport(
        path=path, index_path=index_path, size=size,
        n_images={s: len(arrays[f"{s}_labels"]) for s in SPLITS},
        class_counts={s: dict(zip(CLASS_NAMES, arrays[f"{s}_labels"].sum(axis=0).tolist())) for s in SPLITS},
        layout=table.layout, split_source=split_source, skipped=skipped, ignored_files=ignored, warnings=warnings)


def _decode_notes(n_cropped: int, depths: dict[int, int]) -> list[str]:
    """What decoding changed about the images, for the report's warnings."""
    notes = [f"{n_cropped} non-square image(s) were centre-cropped to a square before resizing."] if n_cropped else []
    deep = {b: n for b, n in sorted(depths.items()) if b > 8}
    if deep:
        notes.append("Images deeper than 8 bits were scaled by the range of their bit depth (inferred from "
                     "each image's maximum): " + ", ".join(f"{n} at {b}-bit" for b, n in deep.items()) + ".")
    return notes


def _write(out_dir: Path, size: int, arrays: dict[str, np.ndarray], index_rows: list[tuple],
           warnings: list[str]) -> tuple[Path, Path]:
    """Write the npz and its index CSV into `out_dir`; (npz path, index path)."""
    path = out_dir / npz_name(size)
    index_path = out_dir / f"{path.stem}_index.csv"
    index = pd.DataFrame(index_rows, columns=["split", "index", "image", "file", "patient_id"])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():  # replace was asked for (_check_target): keep the old file, under a new name
            kept = path.with_name(f"{path.stem}.replaced-{time.strftime('%Y%m%d-%H%M%S')}.npz")
            os.link(path, kept)
            warnings.append(f"Replaced {path}; the old file is kept as {kept.name}.")
        # The large npz first: a full disk then stops the import before either file is replaced.
        write_npz(out_dir, size, {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS})
        atomic_write(index_path, lambda f: index.to_csv(f, index=False))
    except DiskFullError as e:
        raise DataImportError(str(e)) from None
    except OSError as e:
        raise DataImportError(f"Could not write to {out_dir} ({e.strerror or e}). Choose a writable output folder "
                              "with enough free space.") from None

    return path, index_path


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
            f"(e.g. {examples(leaked)}); test metrics will be optimistic."]


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
    p.add_argument("--out", type=Path, required=True, help="output folder, usable as a data root (never demo/)")
    p.add_argument("--replace", action="store_true", help="replace an existing file of this size in --out (kept, "
                   "renamed); refused when a run in --runs-dir was trained on it")
    p.add_argument("--runs-dir", default=None, help="the runs whose data is never replaced; default: $CHESTMNIST_RUNS, "
                   "else checkpoints/")
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
                               fractions=args.fractions, on_progress=progress, replace=args.replace,
                               runs_dir=args.runs_dir)
    except DataImportError as e:
        print(f"import-folder: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(report.to_text())
    return 0
