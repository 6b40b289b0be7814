"""core.data.importer: folder of X-rays + label CSV -> ChestMNIST-layout npz. All data is generated in tmp_path
or written from the bundled demo; the NIH-1000 check also uses the shared folder beside the repo when it is there."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from core.data.chestmnist import CLASS_NAMES, SPLITS, load, npz_name
from core.data.pixels import MAX_PIXELS
from core.data.importer import DataImportError, ImportReport, import_folder, main

NIH1000 = Path(__file__).resolve().parents[2] / "shared/data/nih1000"
DEMO = Path(__file__).resolve().parents[1] / "demo"
KEYS = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]


def onehot(*classes: str) -> np.ndarray:
    v = np.zeros(len(CLASS_NAMES), np.uint8)
    for c in classes:
        v[CLASS_NAMES.index(c)] = 1
    return v


def gray(value: int, size: tuple[int, int]) -> Image.Image:
    return Image.new("L", size, value)


def gradient16(top: int, n: int = 28) -> np.ndarray:
    """(n, n) uint16 horizontal ramp 0..top, exactly n px so the resize to n px is the identity."""
    return np.rint(np.tile(np.arange(n) * (top / (n - 1)), (n, 1))).astype(np.uint16)


def wide_image() -> Image.Image:
    """60x30, black side bands around a 30 px gray-200 centre: a centre crop keeps only the gray."""
    a = np.zeros((30, 60), np.uint8)
    a[:, 15:45] = 200
    return Image.fromarray(a)


def write_nih_folder(root: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, str]]:
    """20 patients, 1-3 images each, mixed modes/sizes/formats; NIH CSV without a Split column.

    Returns (images_dir, csv, expected label vector per name, patient per name).
    """
    images = root / "images"
    images.mkdir()
    findings = ["Effusion|Infiltration", "No Finding", "Pleural_Thickening", "Cardiomegaly",
                "pleural thickening|HERNIA", "No Finding", "Mass|Nodule|Pneumonia", "edema"]
    expected_for = {
        "Effusion|Infiltration": onehot("effusion", "infiltration"), "No Finding": onehot(),
        "Pleural_Thickening": onehot("pleural"), "Cardiomegaly": onehot("cardiomegaly"),
        "pleural thickening|HERNIA": onehot("pleural", "hernia"),
        "Mass|Nodule|Pneumonia": onehot("mass", "nodule", "pneumonia"), "edema": onehot("edema"),
    }
    rows, expected, patient_of = [], {}, {}
    k = 0
    for patient in range(1, 21):
        for follow_up in range(1 + patient % 3):
            name = f"{patient:08d}_{follow_up:03d}.png"
            mode = k % 4
            if mode == 0:
                im = gray(10 + k, (40 + k, 40 + k))
            elif mode == 1:
                im = Image.new("RGB", (50, 50), (200, 100, 50))
            elif mode == 2:
                im = Image.new("RGBA", (33, 33), (180, 180, 180, 0))
            else:
                im = Image.fromarray(np.full((70, 70), 1000 * k, np.uint16))
            im.save(images / name)
            label = findings[k % len(findings)]
            rows.append({"Image Index": name, "Finding Labels": label, "Follow-up #": follow_up,
                         "Patient ID": patient})
            expected[name], patient_of[name] = expected_for[label], str(patient)
            k += 1
    specials = {
        "grad16.png": Image.fromarray(gradient16(65535)),
        "grad12.png": Image.fromarray(gradient16(4095)),
        "wide.png": wide_image(),
        "palette.png": gray(90, (28, 28)).convert("P"),
        "photo.jpg": Image.new("RGB", (64, 48), (120, 120, 120)),
    }
    for i, (name, im) in enumerate(specials.items()):
        im.save(images / name)
        rows.append({"Image Index": name, "Finding Labels": "Atelectasis", "Follow-up #": 0, "Patient ID": 100 + i})
        expected[name], patient_of[name] = onehot("atelectasis"), str(100 + i)
    csv = root / "Data_Entry.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return images, csv, expected, patient_of


def zeros_png16(path: Path, width: int, height: int) -> None:
    """A valid 16-bit grayscale PNG of zeros, compressed row by row: about 2 KB on disk per megapixel,
    so a decompression bomb of tens of megapixels is cheap to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = bytes(1 + 2 * width)  # filter byte 0, then two zero bytes per pixel
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def read_index(report: ImportReport) -> pd.DataFrame:
    return pd.read_csv(report.index_path, dtype={"patient_id": str}, keep_default_na=False)


def pixels(report: ImportReport, name: str) -> np.ndarray:
    index = read_index(report).set_index("image")
    split, i = index.loc[name, "split"], int(index.loc[name, "index"])
    return np.load(report.path)[f"{split}_images"][i]


@pytest.fixture
def nih(tmp_path: Path):
    return write_nih_folder(tmp_path)


def test_nih_folder_becomes_medmnist_layout(nih, tmp_path: Path) -> None:
    images, csv, expected, patient_of = nih
    calls = []
    report = import_folder(images, csv, 28, tmp_path / "out", on_progress=lambda d, t: calls.append((d, t)))

    assert report.path == tmp_path / "out" / npz_name(28)
    with np.load(report.path) as z:
        assert sorted(z.files) == sorted(KEYS)
        arrays = {k: z[k] for k in KEYS}
    for s in SPLITS:
        assert arrays[f"{s}_images"].dtype == np.uint8 and arrays[f"{s}_labels"].dtype == np.uint8
        n = len(arrays[f"{s}_labels"])
        assert n > 0 and arrays[f"{s}_images"].shape == (n, 28, 28) and arrays[f"{s}_labels"].shape == (n, 14)
        assert report.n_images[s] == n
        assert report.class_counts[s] == dict(zip(CLASS_NAMES, arrays[f"{s}_labels"].sum(0).tolist()))
    assert sum(report.n_images.values()) == len(expected)
    assert calls[-1] == (len(expected), len(expected))
    assert not report.skipped and not report.ignored_files

    index = read_index(report)
    assert len(index) == len(expected) and set(index["image"]) == set(expected)
    for row in index.itertuples():
        assert (arrays[f"{row.split}_labels"][row.index] == expected[row.image]).all(), row.image
        assert row.patient_id == patient_of[row.image]
    # Specific decodings: multi-label, "No Finding", NIH's Pleural_Thickening, case and space tolerance.
    by_name = index.set_index("image")
    for name, classes in [("00000001_000.png", ["effusion", "infiltration"]), ("00000001_001.png", []),
                          ("00000002_000.png", ["pleural"]), ("00000002_002.png", ["pleural", "hernia"])]:
        row = by_name.loc[name]
        assert (arrays[f"{row.split}_labels"][row["index"]] == onehot(*classes)).all(), name

    # Patient-disjoint: every patient's images sit in one split.
    assert (index.groupby("patient_id")["split"].nunique() == 1).all()
    # The output folder is a data root core.data can load.
    assert len(load(tmp_path / "out", 28).train) == report.n_images["train"]
    assert "train" in report.to_text() and "pleural" in report.to_text()


def test_pixel_modes_map_to_8bit_gray(nih, tmp_path: Path) -> None:
    images, csv, _, _ = nih
    report = import_folder(images, csv, 28, tmp_path / "out")

    # 16-bit ramps come out as 0..255 ramps, scaled by their bit depth's range (16 and 12 bits), not clipped.
    ramp = np.rint(np.arange(28) * 255 / 27)
    for name in ("grad16.png", "grad12.png"):
        out = pixels(report, name)
        assert out[:, 0].max() == 0 and out[:, -1].min() == 255, name
        assert np.abs(out.astype(int) - ramp[None, :]).max() <= 1, name
    assert any("16-bit" in w and "12-bit" in w for w in report.warnings)
    assert (pixels(report, "00000001_001.png") == 124).all()  # RGB (200,100,50): ITU-R 601 luma
    assert (pixels(report, "00000002_000.png") == 180).all()  # RGBA: alpha dropped, gray kept
    assert (pixels(report, "palette.png") == 90).all()
    assert (pixels(report, "wide.png") == 200).all()  # centre crop dropped the black side bands
    assert any("centre-cropped" in w for w in report.warnings)


def test_split_is_seeded_and_independent_of_row_order(nih, tmp_path: Path) -> None:
    images, csv, _, _ = nih
    a = read_index(import_folder(images, csv, 28, tmp_path / "a", seed=3)).set_index("image")["split"]
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(csv).sample(frac=1, random_state=1).to_csv(shuffled, index=False)
    b = read_index(import_folder(images, shuffled, 28, tmp_path / "b", seed=3)).set_index("image")["split"]
    assert a.sort_index().equals(b.sort_index())
    c = read_index(import_folder(images, csv, 28, tmp_path / "c", seed=4)).set_index("image")["split"]
    assert not a.sort_index().equals(c.sort_index())


def test_binary_column_layout(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (12, 14)).astype(np.uint8)
    for i in range(12):
        gray(i * 20, (30, 30)).save(images / f"x{i}.png")
    # Header case varies and values are written both as 0/1 and as 0.0/1.0.
    columns = ["FileName"] + [c.upper() if i % 2 else c.title() for i, c in enumerate(CLASS_NAMES)]
    cells = [[f"x{i}.png"] + [f"{v}.0" if i % 3 == 0 else str(v) for v in truth[i]] for i in range(12)]
    csv = tmp_path / "labels.csv"
    pd.DataFrame(cells, columns=columns).to_csv(csv, index=False)

    report = import_folder(images, csv, 28, tmp_path / "out", fractions=(0.5, 0.25, 0.25))
    arrays = np.load(report.path)
    for row in read_index(report).itertuples():
        i = int(row.image[1:-4])
        assert (arrays[f"{row.split}_labels"][row.index] == truth[i]).all()
        assert (arrays[f"{row.split}_images"][row.index] == i * 20).all()
    assert "0/1 column" in report.layout and "by image" in report.split_source


def test_binary_layout_rejects_other_values_and_missing_columns(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(6):
        gray(50, (28, 28)).save(images / f"x{i}.png")
    df = pd.DataFrame({"image": [f"x{i}.png" for i in range(6)]} | {c: [0] * 6 for c in CLASS_NAMES})
    df.loc[2, "edema"] = -1  # CheXpert-style "uncertain"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataImportError, match=r"edema='-1'"):
        import_folder(images, tmp_path / "bad.csv", 28, tmp_path / "out")
    df.drop(columns=["edema", "hernia"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataImportError, match="lacks edema, hernia"):
        import_folder(images, tmp_path / "short.csv", 28, tmp_path / "out")
    df[["image"]].to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(DataImportError, match="Finding Labels"):
        import_folder(images, tmp_path / "none.csv", 28, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_column_is_honoured(nih, tmp_path: Path) -> None:
    images, csv, expected, _ = nih
    df = pd.read_csv(csv)
    chosen = ["Train", "VALIDATION", "test", "val"]
    df["Split"] = [chosen[i % 4] for i in range(len(df))]
    df.to_csv(tmp_path / "split.csv", index=False)
    report = import_folder(images, tmp_path / "split.csv", 64, tmp_path / "out", seed=123)

    want = {n: {"Train": "train", "VALIDATION": "val", "val": "val", "test": "test"}[s]
            for n, s in zip(df["Image Index"], df["Split"])}
    index = read_index(report)
    assert dict(zip(index["image"], index["split"])) == want
    # Rows keep the CSV's order within each split.
    for s in SPLITS:
        assert index[index.split == s]["image"].tolist() == [n for n in df["Image Index"] if want[n] == s]
    assert report.split_source == "from the `Split` column"
    assert any("more than one split" in w for w in report.warnings)  # patients 1..20 straddle splits here

    df["Split"] = ["train"] * (len(df) - 1) + ["holdout"]
    df.to_csv(tmp_path / "badsplit.csv", index=False)
    with pytest.raises(DataImportError, match="holdout"):
        import_folder(images, tmp_path / "badsplit.csv", 28, tmp_path / "out2")
    df["Split"] = "train"
    df.to_csv(tmp_path / "trainonly.csv", index=False)
    with pytest.raises(DataImportError, match="val and test split"):
        import_folder(images, tmp_path / "trainonly.csv", 28, tmp_path / "out2")


def test_unknown_findings_are_rejected_by_name(nih, tmp_path: Path) -> None:
    images, csv, _, _ = nih
    df = pd.read_csv(csv)
    df.loc[0, "Finding Labels"] = "Effusion|Lung Opacity"
    df.loc[3, "Finding Labels"] = "Covid"
    df.to_csv(csv, index=False)
    with pytest.raises(DataImportError) as err:
        import_folder(images, csv, 28, tmp_path / "out")
    assert "'Lung Opacity'" in str(err.value) and "'Covid'" in str(err.value)
    assert not (tmp_path / "out").exists()

    df.loc[[0, 3], "Finding Labels"] = ["No Finding|Effusion", ""]
    df.to_csv(csv, index=False)
    with pytest.raises(DataImportError, match="2 row.*lines 2 .*5 "):
        import_folder(images, csv, 28, tmp_path / "out")


def test_missing_extra_empty_corrupt_and_non_image_files(nih, tmp_path: Path) -> None:
    images, csv, expected, _ = nih
    df = pd.read_csv(csv)
    extra_rows = pd.DataFrame({"Image Index": ["gone.png", "empty.png", "corrupt.png"], "Finding Labels": "Mass",
                               "Follow-up #": 0, "Patient ID": [201, 202, 203]})
    pd.concat([df, extra_rows]).to_csv(csv, index=False)
    (images / "empty.png").write_bytes(b"")
    png = (images / "00000001_000.png").read_bytes()
    (images / "corrupt.png").write_bytes(png[: len(png) // 2])
    (images / "notes.txt").write_text("not an image")
    sub = images / "extra"
    sub.mkdir()
    gray(1, (28, 28)).save(sub / "unlisted.png")

    report = import_folder(images, csv, 28, tmp_path / "out")
    skipped = dict(report.skipped)
    assert set(skipped) == {"gone.png", "empty.png", "corrupt.png"}
    assert skipped["gone.png"] == "file not found"
    assert "empty" in skipped["empty.png"] and "unreadable" in skipped["corrupt.png"]
    assert dict(report.ignored_files) == {"notes.txt": "not an image file", "extra/unlisted.png": "not named in the CSV"}
    assert report.n_ignored == 2
    assert sum(report.n_images.values()) == len(expected)
    text = report.to_text()
    assert "Skipped 3" in text and "gone.png (file not found)" in text and "Ignored 2" in text


def test_an_image_over_the_pixel_cap_is_skipped_without_decoding(nih, tmp_path: Path, monkeypatch) -> None:
    images, csv, expected, _ = nih
    zeros_png16(images / "bomb.png", 8000, 8000)  # 64 M pixels from a file of about 125 KB
    assert 8000 * 8000 > MAX_PIXELS and (images / "bomb.png").stat().st_size < 200_000
    df = pd.read_csv(csv)
    bomb = pd.DataFrame({"Image Index": ["bomb.png"], "Finding Labels": "Mass", "Follow-up #": 0, "Patient ID": 300})
    pd.concat([df, bomb]).to_csv(csv, index=False)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(im):
        decoded.append(im.size)
        return real_load(im)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)

    report = import_folder(images, csv, 28, tmp_path / "out")
    reason = dict(report.skipped)["bomb.png"]
    assert "too large to decode" in reason and "64,000,000 pixels" in reason
    assert (8000, 8000) not in decoded, "the image was decoded before its size was checked"
    assert (70, 70) in decoded  # the spy sees the other images being decoded
    assert sum(report.n_images.values()) == len(expected)


def test_semicolon_separated_csv_is_read_and_named(nih, tmp_path: Path) -> None:
    images, csv, expected, _ = nih
    pd.read_csv(csv).to_csv(tmp_path / "semi.csv", sep=";", index=False)
    report = import_folder(images, tmp_path / "semi.csv", 28, tmp_path / "semi")
    reference = import_folder(images, csv, 28, tmp_path / "comma")
    assert report.layout == "NIH `Finding Labels` (semicolon-separated)"
    assert read_index(report).equals(read_index(reference))
    with np.load(report.path) as a, np.load(reference.path) as b:
        assert all(np.array_equal(a[k], b[k]) for k in KEYS)
    assert "semicolon-separated" in report.to_text()


def test_more_than_half_unusable_is_fatal(nih, tmp_path: Path) -> None:
    images, csv, expected, _ = nih
    df = pd.read_csv(csv)
    df["Image Index"] = df["Image Index"].str.replace(".png", ".jpg")  # only photo.jpg still matches
    df.to_csv(csv, index=False)
    with pytest.raises(DataImportError, match=r"cannot be used.*extensions"):
        import_folder(images, csv, 28, tmp_path / "out")


def test_duplicates_merge_when_identical_and_fail_when_conflicting(nih, tmp_path: Path) -> None:
    images, csv, expected, _ = nih
    df = pd.read_csv(csv)
    pd.concat([df, df.iloc[[0, 0, 5]]]).to_csv(tmp_path / "same.csv", index=False)
    report = import_folder(images, tmp_path / "same.csv", 28, tmp_path / "out")
    assert sum(report.n_images.values()) == len(expected)
    assert any("00000001_000.png (x3)" in w for w in report.warnings)

    conflict = df.iloc[[5]].assign(**{"Finding Labels": "Hernia"})
    pd.concat([df, conflict]).to_csv(tmp_path / "conflict.csv", index=False)
    with pytest.raises(DataImportError, match=df["Image Index"][5]):
        import_folder(images, tmp_path / "conflict.csv", 28, tmp_path / "out2")


def test_too_little_data_for_three_splits(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        gray(9, (28, 28)).save(images / f"{i}.png")
    pd.DataFrame({"Image Index": ["0.png", "1.png", "2.png"], "Finding Labels": "No Finding",
                  "Patient ID": [1, 1, 2]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(DataImportError, match="would be empty"):
        import_folder(images, tmp_path / "l.csv", 28, tmp_path / "out")


def test_failed_import_keeps_previous_output(nih, tmp_path: Path) -> None:
    images, csv, _, _ = nih
    out = tmp_path / "out"
    first = import_folder(images, csv, 28, out)
    before = first.path.read_bytes()
    df = pd.read_csv(csv)
    df.loc[0, "Finding Labels"] = "Unknown Thing"
    df.to_csv(csv, index=False)
    with pytest.raises(DataImportError):
        import_folder(images, csv, 28, out)
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["chestmnist.npz", "chestmnist_index.csv"]


def test_main_exit_codes(nih, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, csv, _, _ = nih
    assert main([str(images), str(csv), "--size", "28", "--out", str(tmp_path / "out"), "--seed", "1"]) == 0
    assert "Images: train" in capsys.readouterr().out

    assert main([str(images), str(tmp_path / "nope.csv"), "--size", "28", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "nope.csv does not exist" in err and "Traceback" not in err

    df = pd.read_csv(csv)
    df.loc[1, "Finding Labels"] = "Lung Opacity"
    df.to_csv(csv, index=False)
    assert main([str(images), str(csv), "--size", "28", "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "'Lung Opacity'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as ex:  # argparse: size not a ChestMNIST size
        main([str(images), str(csv), "--size", "50", "--out", str(tmp_path / "o4")])
    assert ex.value.code == 2


def test_real_png_folder_matches_bicubic_reference(tmp_path: Path) -> None:
    """Real radiographs through the whole importer, on every clone: the demo's 224 px images written out as
    PNGs under their NIH names, imported at 64 px with the demo's own label CSV."""
    table = pd.read_csv(DEMO / "Data_Entry_nih667.csv")
    images = tmp_path / "png"
    images.mkdir()
    with np.load(DEMO / "chestmnist_224.npz") as big:
        sources = {s: big[f"{s}_images"] for s in SPLITS}
    for s in SPLITS:
        for name, a in zip(table.loc[table["Split"] == s, "Image Index"], sources[s], strict=True):
            Image.fromarray(a).save(images / name, compress_level=1)
    report = import_folder(images, DEMO / "Data_Entry_nih667.csv", 64, tmp_path / "out")
    assert report.n_images == {"train": 397, "val": 101, "test": 169}
    assert not report.skipped and not report.warnings
    with np.load(report.path) as ours, np.load(DEMO / "chestmnist_64.npz") as shipped:
        for s in SPLITS:
            assert np.array_equal(ours[f"{s}_labels"], shipped[f"{s}_labels"]), s
            # The reference: PIL's bicubic resize of each 224 px image on its own, in the CSV's order.
            ref = np.stack([np.asarray(Image.fromarray(a).resize((64, 64), Image.Resampling.BICUBIC)) for a in sources[s]])
            assert np.array_equal(ours[f"{s}_images"], ref), s
            # The demo's 64 px file was resized from the originals, not from 224 px: close, not equal.
            assert np.abs(ours[f"{s}_images"].astype(int) - shipped[f"{s}_images"]).mean() < 1.0, s


# Collected only where the shared folder sits beside the clone (a user's clone has none): the check above
# covers the importer everywhere, this one adds the PNGs NIH-1000 ships and its 28 px file.
if NIH1000.is_dir():
    def test_real_nih1000_matches_shipped_npz(tmp_path: Path) -> None:
        report = import_folder(NIH1000 / "images", NIH1000 / "Data_Entry_nih1000.csv", 28, tmp_path)
        assert report.n_images == {"train": 616, "val": 172, "test": 212}
        assert not report.skipped and not report.warnings
        with np.load(report.path) as ours, np.load(NIH1000 / "chestmnist.npz") as shipped:
            for s in SPLITS:
                assert np.array_equal(ours[f"{s}_labels"], shipped[f"{s}_labels"]), s
                # The shipped 28 px file was made with the same bicubic resize from the same PNGs.
                assert np.array_equal(ours[f"{s}_images"], shipped[f"{s}_images"]), s
