"""The label CSV of a folder import: its columns, findings, splits and duplicates (core.data.importer uses it).

NIH layout (`Image Index`, `Finding Labels` joined by `|`, `Patient ID`, optional `Split`) or 14
binary columns named after the findings; see core.data.importer's docstring for what is fatal.
"""
from __future__ import annotations

import io
import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.data.chestmnist import CLASS_NAMES, DataError

# Normalised names of the image column, in order of preference when several are present.
IMAGE_COLUMNS: tuple[str, ...] = ("imageindex", "image", "file", "filename", "path")
_SPLIT_VALUES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_NO_FINDING = "nofinding"
# How many names an error message or report line shows before "and N more".
_SHOW = 5
# A label CSV is read whole into memory; NIH's full Data_Entry_2017.csv (112,120 rows) is under 8 MB.
MAX_CSV_BYTES = 128 * 2**20
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}



class DataImportError(DataError):
    """The folder or CSV cannot be imported; the message says what, which files, and what to do."""


def examples(items: Sequence[str], k: int = _SHOW) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" and {len(items) - k:,} more" if len(items) > k else "")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


_FINDINGS: dict[str, int] = {_key(c): i for i, c in enumerate(CLASS_NAMES)} | {
    "pleuralthickening": CLASS_NAMES.index("pleural"),
}




@dataclass
class Table:
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


def read_table(labels_csv: Path) -> Table:
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
            f"{labels_csv.name} has no image-name column; its columns are {examples(list(map(str, df.columns)), 20)}. "
            "Name the column with the image file names `Image Index` (or image, file, filename, path).")
    names = [n.strip() for n in df[name_col]]
    empty = [str(line) for line, n in zip(lines, names) if not n]
    if empty:
        raise DataImportError(f"{labels_csv.name}: {len(empty)} row(s) have an empty `{name_col}` (lines "
                              f"{examples(empty)}). Fill in the image file name or delete those rows.")

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
    return Table(names, labels, patients, splits, layout, name_col)


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
        listed = examples([f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in unknown.most_common()], 20)
        raise DataImportError(
            f"{csv_name}: `Finding Labels` has finding names ChestMNIST does not know: {listed}. ChestMNIST's "
            f"14 classes are {', '.join(CLASS_NAMES)} (NIH's Pleural_Thickening counts as pleural) plus "
            "'No Finding'. Rename those findings to one of these, or remove the rows; they are not dropped "
            "silently because that would turn positives into negatives.")
    if bad_lines:
        raise DataImportError(
            f"{csv_name}: {len(bad_lines)} row(s) have an empty `Finding Labels` or combine 'No Finding' with "
            f"findings (lines {examples(bad_lines)}). Write 'No Finding' for images without findings, "
            "otherwise the findings joined by '|'.")
    return labels


def _parse_binary(df: pd.DataFrame, columns: dict[str, str], lines: np.ndarray, csv_name: str) -> np.ndarray:
    have = {_FINDINGS[k] for k in columns if k in _FINDINGS}
    if not have:
        raise DataImportError(
            f"{csv_name} has neither a `Finding Labels` column (NIH layout) nor 0/1 columns named after the "
            f"ChestMNIST classes; its columns are {examples(list(map(str, df.columns)), 20)}. Use one of the "
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
            f"{csv_name}: class columns must hold 0 or 1, but {len(bad)} cell(s) do not: {examples(bad)}. "
            "Uncertain or blank labels have no ChestMNIST meaning; decide them as 0 or 1, or drop the rows.")
    return labels


def _parse_splits(column: pd.Series, lines: np.ndarray, csv_name: str) -> list[str]:
    values = [v.strip().lower() for v in column]
    bad = [f"line {lines[r]} ({column.iloc[r]!r})" for r, v in enumerate(values) if v not in _SPLIT_VALUES]
    if bad:
        raise DataImportError(
            f"{csv_name}: `Split` must be train, val (or validation) or test, but {len(bad)} row(s) say otherwise: "
            f"{examples(bad)}. Fix those values, or delete the column to get a seeded patient-disjoint split.")
    return [_SPLIT_VALUES[v] for v in values]


def deduplicate(table: Table, csv_name: str) -> tuple[list[int], list[str]]:
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
            f"split: {examples(conflicts)}. Keep one correct row per image.")
    warnings = []
    if merged:
        warnings.append(f"{len(merged)} image name(s) appear in more than one identical CSV row and were imported "
                        f"once: {examples(merged)}.")
    return [rows[0] for rows in rows_of.values()], warnings
