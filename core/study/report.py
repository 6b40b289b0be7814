"""Building a report: records of finished runs into summary.json, CSV tables, figures and report.md."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from core.errors import UserError
from core.data import chestmnist as D
from core.runs import record as runs
from core.runs import groups as G
from core.evaluate.scoring import measure_inference
from core.data.provenance import data_provenance
from core.study.common import COST_KEYS, STUDY_VERSION, TEST_KEYS, VAL_KEYS, StudyError, log
from core.study.figures import draw_figures
from core.study.markdown import markdown, observations
from core.study.tables import row_label
from core.study.reading import StudyReport
from core.study.recipe import read_study_file, recipe_settings, study_file
from core.study.comparisons import DEFAULT_MARGIN
from core.study.differences import differences
from core.study.frontier import frontier, run_point
from core.study.resolution import resolution_sections
from core.study.records import CALIBRATION_KEYS, cpu_model, label_candidates, readme_title, run_record, size_rows


def data_section(records: list[dict]) -> dict:
    files = {}
    for r in records:
        files.setdefault(r["size"], {"size": r["size"], "data_root": r["data_root"], "file": r["data_file"],
                                     "md5": r["data_md5"], "n": r["data_n"],
                                     **data_provenance(r["size"], r["data_n"], r["data_md5"])})
    entries = [files[s] for s in sorted(files)]
    roots = sorted({e["data_root"] for e in entries})
    official = all(e["official"] for e in entries)
    title = next((t for t in (readme_title(root) for root in roots) if t), None)
    if official:
        label = "official ChestMNIST"
    elif title:
        label = f"{title.split(':')[0].strip()} (not ChestMNIST)"
    else:
        label = "not the official ChestMNIST"
    verdicts: dict[str, list[int]] = {}
    for e in entries:
        verdicts.setdefault(e["verdict"], []).append(e["size"])
    summary = " ".join(f"{', '.join(map(str, s))} px: {v}." for v, s in verdicts.items())
    return {"official": official, "label": label, "roots": roots, "readme_title": title, "files": entries,
            "verdict": summary}


def machine_section(records: list[dict], inference: dict) -> dict:
    trained = sorted({(r["machine"].get("platform"), r["machine"].get("cpus"), r["machine"].get("device"),
                       r["versions"].get("torch")) for r in records}, key=str)
    gpu = None
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {
        "trained_on": [{"platform": p, "cpus": c, "device": d, "torch": t} for p, c, d, t in trained],
        "train_devices": sorted({d for r in records for d in r["train_devices"]}),
        "report_built_on": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                            "gpus": gpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "python": platform.python_version()},
        "inference_device": inference.get("device"),
    }


def build_report(run_dirs: Iterable[str | Path], out_dir: str | Path, *, device: str = "auto",
                 study_name: str | None = None, measure_inference_time: bool = True, inference_images: int = 512,
                 failed: list[str] | None = None, command: list[str] | None = None,
                 n_boot: int = 2000, margin: float = DEFAULT_MARGIN, correction: str = "holm",
                 equivalence: bool = False, effective: bool = False, ensembles: bool = False,
                 sequential: dict | None = None) -> "StudyReport":
    """Write the report for finished runs into `out_dir` and return it (as `load_study` would).

    Any finished runs can be passed (e.g. ones picked on the Compare page, or the runs of several
    models): they are grouped by candidate (model and recipe) and size, seeds of a group are
    averaged, and the Differences table compares groups paired (core.study.differences, `n_boot`
    resamples; p adjusted within each family by `correction`, "holm" or "bh"; non-inferiority of each size
    to the largest at `margin` AUC, and with `equivalence` equivalence within ±margin). With `effective`, the
    largest size's effective-resolution curve and which findings gain from resolution; with `ensembles`,
    multi-scale ensembles against their same-size control (core.study.resolution). `sequential`: an
    until-decided study's record (core.study.until), its verdicts and rounds shown first. Writes report.md, summary.json, runs.csv, table1_val.csv,
    test.csv, cost.csv, per_class_test_auc.csv and the figures. Runs without test metrics
    raise RunError (evaluate them first). Inference time is measured here, on `device`, with
    the first run of each size (seeds share the architecture).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = [Path(p).resolve() for p in run_dirs]
    if not run_dirs:
        raise StudyError("No runs to report on.")
    for p in run_dirs:
        if not runs.has_test_metrics(p):
            raise runs.RunError(f"{p} has no test metrics: it has not finished (or was never evaluated). "
                                f"Finish it, or run `python -m core.evaluate {p}`.")
    records, notes = one_run_per_seed([run_record(p) for p in run_dirs])
    label_candidates(records)
    order = {c: i for i, c in reversed(list(enumerate(r["candidate"] for r in records)))}
    records.sort(key=lambda r: (order[r["candidate"]], r["size"], r["seed"]))

    inference: dict = {}
    if measure_inference_time:
        for cand, size in dict.fromkeys((r["candidate"], r["size"]) for r in records):
            first = next(r for r in records if r["size"] == size and r["candidate"] == cand)
            try:
                data = D.load(first["data_root"], size)
                m = measure_inference(first["run_dir"], data.test.images[:inference_images], device)
            except UserError as e:
                notes.append(f"Inference time at {size} px not measured: {e}")
                continue
            inference.setdefault("device", m["inference_device"])
            inference.setdefault("threads", m["inference_threads"])
            inference.setdefault("images", m["inference_images"])
            inference.setdefault("batch", m["inference_batch"])
            for r in records:
                if r["size"] == size and r["candidate"] == cand:
                    r.update(m)
    sizes = size_rows(records)
    data = data_section(records)
    machine = machine_section(records, inference)
    seeds = sorted({r["seed"] for r in records})
    first_cfg = records[0]["train_config"]
    summary = {
        "format_version": STUDY_VERSION, "name": study_name or out_dir.name, "report_dir": str(out_dir.resolve()),
        "created": time.time(), "command": command,
        "recipe": recipe_settings(first_cfg),
        "seeds": seeds, "sizes": sizes, "runs": [{k: v for k, v in r.items() if k != "train_config"} for r in records],
        "data": data, "machine": machine, "inference": inference,
        "ci_level": records[0]["ci_level"], "n_boot": records[0]["n_boot"],
        "failed_runs": failed or [], "notes": notes,
        "candidates": list(dict.fromkeys(r["candidate"] for r in records)),
        "differences": differences(records, n_boot=n_boot, correction=correction, margin=margin,
                                   equivalence=equivalence),
    }
    summary["sequential"] = {k: v for k, v in (sequential or {}).items() if k not in ("pid", "state")} or None
    summary["resolution"] = resolution_sections(records, effective, ensembles, n_boot, device)
    grid = frontier([run_point(r["run_dir"]) for r in records], n_boot=n_boot, correction=correction)
    summary["frontier"] = grid if grid["subsets"] > 1 else None  # images or pixels: only a grid over subsets
    summary["observations"] = observations(summary)
    mixed = sorted({json.dumps(recipe_settings(r["train_config"]), sort_keys=True) for r in records})
    if len(mixed) > 1:
        notes.append("The runs do not share one recipe: they are grouped by candidate (model plus the settings in "
                      "which it differs from the most common recipe): " + "; ".join(summary["candidates"]) + ".")
    summary["figures"] = draw_figures(summary, records, out_dir)
    write_tables(summary, out_dir)
    (out_dir / "report.md").write_text(markdown(summary))
    runs.write_json(out_dir / "summary.json", summary)
    return StudyReport(out_dir, summary)


def one_run_per_seed(records: list[dict]) -> tuple[list[dict], list[str]]:
    """The records of the runs core.runs.groups.seed_groups counts (each seed of a recipe and size once: its most
    recent run, as on the Compare page), and a note per repeated seed saying which run was used."""
    used, notes = set(), []
    for g in G.seed_groups({r["run_dir"]: r["train_config"] for r in records}):
        used.update(g.runs)
        notes += G.repeat_notes(g, f"{g.size} px {g.model}")
    return [r for r in records if r["run_dir"] in used], notes


def write_tables(summary: dict, out_dir: Path) -> None:
    flat = []
    for r in summary["runs"]:
        row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        row["auc_undefined_classes"] = ", ".join(u["name"] for u in r["auc_undefined_classes"])
        row.update({f"test_auc_{c}": v for c, v in r["test_auc_per_class"].items()})
        flat.append(row)
    pd.DataFrame(flat).to_csv(out_dir / "runs.csv", index=False)
    size_cols = ["candidate", "size", "n_seeds"]
    by_size = pd.DataFrame([{k: (", ".join(map(str, v)) if isinstance(v, list) and k in ("seeds", "best_epoch") else v)
                             for k, v in r.items() if not isinstance(v, dict) and k != "auc_undefined_classes"}
                            for r in summary["sizes"]])

    def cols(keys):
        out = []
        for k in keys:
            out += [c for c in (k, f"{k}_std", f"{k}_ci_low", f"{k}_ci_high") if c in by_size.columns]
        return out
    by_size[size_cols + ["seeds", "best_epoch"] + cols(VAL_KEYS)].to_csv(out_dir / "table1_val.csv", index=False)
    by_size[size_cols + cols(TEST_KEYS)].to_csv(out_dir / "test.csv", index=False)
    by_size[size_cols + cols(CALIBRATION_KEYS)].to_csv(out_dir / "calibration.csv", index=False)
    StudyReport(out_dir, summary).differences_frame().to_csv(out_dir / "differences.csv", index=False)
    by_size[size_cols + cols(COST_KEYS) + ["device", "world_size", "memory_note"]].to_csv(out_dir / "cost.csv", index=False)
    per_class = pd.DataFrame({row_label(summary, r): r["test_auc_per_class"] for r in summary["sizes"]})
    per_class.index.name = "class"
    per_class.to_csv(out_dir / "per_class_test_auc.csv")


def rebuild_report(out_dir: str | Path, device: str = "auto", **verdicts: Any) -> StudyReport:
    """Rebuild a study's report from the finished runs its study.json lists (no training); `verdicts`
    (margin, correction, equivalence) go to build_report."""
    study = read_study_file(out_dir)
    if study is None:
        raise StudyError(f"{out_dir} has no study.json; run the study first.")
    done = [Path(e["run_dir"]) for e in study["runs"] if runs.has_test_metrics(e["run_dir"])]
    missing = [e for e in study["runs"] if Path(e["run_dir"]) not in done]
    if missing:
        log(f"{len(missing)} run(s) not finished, left out: " + ", ".join(f"{e['size']} px s{e['seed']}" for e in missing))
    if not done:
        raise StudyError(f"No finished runs in {study_file(Path(out_dir))}; run the study to train them.")
    return build_report(done, out_dir, device=device, study_name=study["name"], command=study.get("command"),
                        sequential=study.get("sequential"), **verdicts)


def finished_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders named in `paths` (each a run folder, or a folder of run folders), in the order given;
    a folder's unfinished runs are left out, a named run that is unfinished is an error."""
    out: list[Path] = []
    for path in map(Path, paths):
        if runs.is_run_dir(path):
            out.append(path)
        elif path.is_dir():
            out += sorted(d for d in path.iterdir() if d.is_dir() and runs.is_run_dir(d) and runs.has_test_metrics(d))
        else:
            raise StudyError(f"{path} is neither a run folder nor a folder of run folders.")
    if not out:
        raise StudyError("No finished runs in " + ", ".join(map(str, paths)) + ".")
    return out
