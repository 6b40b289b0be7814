"""`python -m core.data {info,download,import-folder}`: the data command line over core.data and core.data.importer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from core.data.chestmnist import DATA_ROOT_HELP, SIZES, SPLITS, DataError, available_sizes, data_root_arg, default_root, download, load, npz_name, npz_path
from core.data.importer import main as import_main


def main(argv: list[str] | None = None) -> int:
    """`python -m core.data {info,download,import-folder} ...`"""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import-folder"]:
        return import_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m core.data", description="ChestMNIST data: list, download, import.")
    sub = p.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="which sizes are present under the data root, with split sizes")
    info.add_argument("--data-root", type=data_root_arg, default=None, help=DATA_ROOT_HELP)
    dl = sub.add_parser("download", help="download the official npz for a size (MD5-checked)")
    dl.add_argument("--size", type=int, required=True, choices=SIZES)
    dl.add_argument("--data-root", type=data_root_arg, default=None, help=DATA_ROOT_HELP)
    sub.add_parser("import-folder", help="convert a folder of images + label CSV into medmnist layout")
    args = p.parse_args(argv)
    root = Path(args.data_root) if args.data_root else default_root()
    try:
        if args.cmd == "info":
            for size in SIZES:
                if size not in available_sizes(root):
                    print(f"{size:>4} px  missing  ({npz_path(root, size)})")
                    continue
                d = load(root, size)
                counts = ", ".join(f"{s} {len(d.split(s)):,}" for s in SPLITS)
                print(f"{size:>4} px  {counts}  ({d.path})")
        else:
            bar = tqdm(unit="B", unit_scale=True, desc=npz_name(args.size))

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            print(download(root, args.size, progress))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0



if __name__ == "__main__":
    sys.exit(main())
