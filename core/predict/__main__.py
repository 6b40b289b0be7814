"""`python -m core.predict RUN IMAGES... [--out predictions.csv]`: a run's predictions on your own images.

    python -m core.predict checkpoints/<run-id> xray1.png xray2.jpg --out predictions.csv
    python -m core.predict checkpoints/<run-id> my_folder/            # every image under it; CSV to stdout

One row per usable image: per-finding probability (`p_<finding>`) and decision at the run's saved
thresholds (`<finding>`, 1 present), the run id and where the thresholds come from. Images go through
the importer's preprocessing (core.data.pixels); a file that cannot be used is named on stderr with why.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from core.errors import UserError
from core.files import atomic_write
from core.predict.images import image_files, read_or_reason
from core.predict.scoring import load_run, predictions_table
from core.runs.record import RunError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict",
                                description="Score your own chest X-ray images with a run's best model.")
    p.add_argument("run_dir", help="a finished (evaluated) run folder")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...; DICOM with pydicom) or folders of them")
    p.add_argument("--out", metavar="CSV", help="where to write the predictions (default: standard output)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    args = p.parse_args(argv)
    try:
        out = Path(args.out).expanduser() if args.out else None
        if out is not None and out.is_dir():
            raise RunError(f"--out {out} is a folder; give a file name such as {out / 'predictions.csv'}.")
        files = image_files(args.images)
        if not files:
            raise RunError(f"no image files in {' '.join(args.images)} (looked for PNG, JPEG and the other "
                           "formats PIL reads, and DICOM).")
        run = load_run(args.run_dir, args.device)
        read = {f: read_or_reason(str(f), f) for f in files}
        for f, why in read.items():
            if isinstance(why, str):
                print(f"skipped {f}: {why}", file=sys.stderr)
        usable = [im for im in read.values() if not isinstance(im, str)]
        if not usable:
            raise RunError(f"none of the {len(files)} file(s) is a usable image (reasons above).")
        table = predictions_table(run, usable)
        if out is None:
            table.to_csv(sys.stdout, index=False)
        else:
            text = io.StringIO()
            table.to_csv(text, index=False)
            atomic_write(out, lambda f: f.write(text.getvalue().encode()))
            print(out.resolve())
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(usable)} image(s) scored by {run.run_id} ({run.size} px); thresholds {run.thresholds_source}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
