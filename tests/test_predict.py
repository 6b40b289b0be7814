"""core.predict on a user's own images: the CLI's scores equal the run's own evaluation when the test split
is fed back as PNG files, every kind of bad file gets a reason (never a traceback), and the Your images
page (AppTest) with no upload, with runs picked, and with uploads (the uploader stood in for)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image

from core.data import chestmnist as D
from core.data.pixels import MAX_PIXELS
from core.metrics import thresholds as T
from core.predict import images as P
from core.predict.__main__ import main
from core.runs import record as runs


def write_test_pngs(data_root: Path, size: int, folder: Path) -> tuple[np.ndarray, list[Path]]:
    """The test split of the planted data written out as PNGs, in order: (images, paths)."""
    images = D.load(data_root, size).test.images
    folder.mkdir(parents=True)
    paths = [folder / f"test_{i:04d}.png" for i in range(len(images))]
    for image, path in zip(images, paths):
        Image.fromarray(image).save(path)
    return images, paths


@pytest.mark.parametrize("size", [28, 64])
def test_cli_scores_test_pngs_as_the_runs_own_evaluation(finished_runs, data_root, tmp_path, capsys, size):
    run_dir = finished_runs[size]
    _, paths = write_test_pngs(data_root, size, tmp_path / "pngs")
    out = tmp_path / "predictions.csv"
    assert main([str(run_dir), str(tmp_path / "pngs"), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["image"].tolist() == [str(p) for p in paths]  # one row per image, in file order
    assert (table["run"] == run_dir.name).all() and (table["size"] == size).all()
    assert table["thresholds"].str.startswith("chosen by core.evaluate: youden on val").all()
    scores, _ = runs.load_scores(run_dir, "test")
    got = table[[f"p_{c}" for c in D.CLASS_NAMES]].to_numpy()
    np.testing.assert_allclose(got, scores, atol=1e-6, rtol=0)
    thr = T.load_thresholds(runs.chosen_thresholds_path(run_dir), D.CLASS_NAMES)
    np.testing.assert_array_equal(table[list(D.CLASS_NAMES)].to_numpy(), (got >= thr).astype(int))
    assert f"{len(paths)} image(s) scored by {run_dir.name}" in capsys.readouterr().err


def zeros_png16(width: int, height: int) -> bytes:
    """A valid 16-bit grayscale PNG of zeros, compressed: tens of megapixels in a small file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(bytes(1 + 2 * width)) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bad_and_odd_files() -> dict[str, bytes]:
    gray = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1)))  # 50 x 40, not square
    png = encoded(gray, "PNG")
    frames = [gray, Image.fromarray(255 - np.asarray(gray))]
    return {
        "notes.txt": b"not an image at all",
        "empty.png": b"",
        "truncated.png": png[: len(png) // 2],
        "huge.png": zeros_png16(8000, 8000),
        "animated.gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "deep.png": encoded(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG"),
        "cmyk.jpg": encoded(gray.convert("CMYK"), "JPEG"),
        "colour.png": encoded(gray.convert("RGB"), "PNG"),
    }


def test_every_bad_file_gets_a_reason_and_odd_ones_a_note():
    files = bad_and_odd_files()
    assert 8000 * 8000 > MAX_PIXELS
    read = {name: P.read_or_reason(name, data) for name, data in files.items()}
    reasons = {name: r for name, r in read.items() if isinstance(r, str)}
    assert set(reasons) == {"notes.txt", "empty.png", "truncated.png", "huge.png", "animated.gif"}
    assert "not a format PIL can read" in reasons["notes.txt"]
    assert "empty" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "too large" in reasons["huge.png"] and "downscale" in reasons["huge.png"]
    assert "2 frames" in reasons["animated.gif"]
    notes = {name: " ".join(r.notes) for name, r in read.items() if not isinstance(r, str)}
    assert "16-bit values scaled" in notes["deep.png"] and "CMYK converted" in notes["cmyk.jpg"]
    assert "colour converted" in notes["colour.png"] and "centre-cropped to 40 x 40" in notes["colour.png"]
    # The 16-bit image is the 8-bit one scaled by 257: read back it is the same picture at every size.
    assert np.array_equal(read["deep.png"].at(28), P.read_image("g.png", encoded(
        Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))), "PNG")).at(28))


def test_an_upload_over_the_byte_limit_is_refused_unread(monkeypatch):
    monkeypatch.setattr(P, "MAX_BYTES", 1000)
    assert "over the limit of" in P.read_or_reason("big.png", bytes(2000))


def test_cli_names_skipped_files_and_fails_cleanly(finished_runs, data_root, tmp_path, capsys):
    run_dir = finished_runs[28]
    folder = tmp_path / "mixed"
    write_test_pngs(data_root, 28, folder)
    for name, data in bad_and_odd_files().items():
        (folder / name).write_bytes(data)
    out = tmp_path / "p.csv"
    assert main([str(run_dir), str(folder), str(folder / "notes.txt"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for name in ("empty.png", "truncated.png", "huge.png", "animated.gif", "notes.txt"):
        assert f"skipped {folder / name}:" in err
    table = pd.read_csv(out)
    assert len(table) == 96 + 3 and "Traceback" not in err

    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "x.png").write_bytes(b"nope")
    for argv, says in [([str(run_dir), str(bad_only)], "none of the 1 file(s)"),
                       ([str(run_dir), str(tmp_path / "missing.png")], "does not exist"),
                       ([str(tmp_path), str(folder)], "is missing"),
                       ([str(run_dir), str(folder), "--out", str(tmp_path)], "is a folder")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and says in last and "Traceback" not in err


def test_dicom_is_read_where_pydicom_is_installed(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)  # 12-bit-ish values, not square
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 48, 64, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "chest.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = P.read_image(path.name, path)
    assert item.at(28).shape == (28, 28) and "centre-cropped to 48 x 48" in " ".join(item.notes)
    assert "16-bit values scaled" in " ".join(item.notes)


# --- the Your images page ---------------------------------------------------------------------


class Upload:
    """What st.file_uploader hands the page: a name, the bytes, an id."""

    def __init__(self, name: str, data: bytes):
        self.name, self.file_id, self._data = name, name, data

    def getvalue(self) -> bytes:
        return self._data


def test_page_without_upload_opens_on_the_newest_run_and_asks_for_images(open_page, data_root, finished_runs):
    runs_dir = finished_runs[28].parent
    at = open_page("predict.py", data_root, runs_dir).run()
    assert not at.exception and not at.error
    assert at.multiselect(key="pred_runs").value == [sorted(p.name for p in runs_dir.iterdir())[-1]]
    assert any("Drop one or more images" in i.value for i in at.info)
    at.multiselect(key="pred_runs").set_value([r.name for r in finished_runs.values()]).run()
    assert not at.exception and not at.error and len(at.multiselect(key="pred_runs").value) == 2
    at.multiselect(key="pred_runs").set_value([]).run()
    assert any("Pick at least one run" in i.value for i in at.info)


def test_page_without_runs_says_how_to_get_one(open_page, data_root, tmp_path):
    at = open_page("predict.py", data_root, tmp_path).run()
    assert not at.exception and any("No evaluated runs" in i.value for i in at.info)


def test_page_shows_each_upload_through_each_run_and_names_bad_files(open_page, data_root, finished_runs,
                                                                      monkeypatch):
    image = D.load(data_root, 64).test.images[0]
    uploads = [Upload("mine.png", encoded(Image.fromarray(image), "PNG")), Upload("broken.png", b"\x89PNG oops")]
    monkeypatch.setattr(st, "file_uploader", lambda *a, **k: uploads)  # AppTest cannot upload files
    at = open_page("predict.py", data_root, finished_runs[28].parent)
    at.session_state["pred_runs"] = [finished_runs[28].name, finished_runs[64].name]
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["**broken.png** cannot be used: unreadable image: not a format PIL can "
                                           "read (PNG, JPEG, TIFF, ...)."]
    assert [s.value for s in at.subheader] == ["mine.png"]
    tables = [df.value for df in at.dataframe]
    assert len(tables) == 2 and all(list(t["finding"]) == list(D.CLASS_NAMES) for t in tables)
    scores, _ = runs.load_scores(finished_runs[64], "test")  # the 64 px run scores the image as in its evaluation
    np.testing.assert_allclose(tables[1]["probability"], scores[0], atol=1e-6)
    assert any("NOT ChestMNIST" in w.value for w in at.warning)


def test_the_users_saved_thresholds_decide_and_are_named(runs_copy, data_root, tmp_path):
    run_dir = runs_copy[28]
    T.save_thresholds(runs.user_thresholds_path(run_dir), np.full(D.N_CLASSES, 0.25), D.CLASS_NAMES, method="manual")
    write_test_pngs(data_root, 28, tmp_path / "pngs")
    out = tmp_path / "p.csv"
    assert main([str(run_dir), str(tmp_path / "pngs"), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["thresholds"].str.startswith("saved by the user on the Thresholds page: manual on val").all()
    probs = table[[f"p_{c}" for c in D.CLASS_NAMES]].to_numpy()
    np.testing.assert_array_equal(table[list(D.CLASS_NAMES)].to_numpy(), (probs >= 0.25).astype(int))
