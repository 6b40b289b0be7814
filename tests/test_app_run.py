"""pages/run.py and pages/reports.py through streamlit's AppTest, against real run folders and a built report."""
from __future__ import annotations

import json
from pathlib import Path


from core.runs import record as runs
from core.study import build_report


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def run_page(open_page, data_root, runs_dir, run_id: str | None = None):
    at = open_page("run.py", data_root, runs_dir)
    if run_id:
        at.query_params["run"] = run_id
    return at.run()


def test_a_link_opens_that_run_with_config_curves_metrics_log_and_files(open_page, data_root, runs_copy):
    run_dir = runs_copy[64]
    runs.log_path(run_dir).write_text("epoch 1 done\nepoch 2 done\n")
    at = run_page(open_page, data_root, run_dir.parent, run_dir.name)
    assert not at.exception and not at.error
    assert at.selectbox(key="run_page_run").value == run_dir.name
    assert any(run_dir.name in m and "finished" in m for m in texts(at.markdown))
    assert any(w.startswith("Data: NOT ChestMNIST") for w in texts(at.warning))  # planted data is labelled
    config = json.loads((run_dir / "config.json").read_text())
    assert at.json[0].value == json.dumps(config) or json.loads(at.json[0].value) == config
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert {m.label: m.value for m in at.metric}["test AUC (medmnist)"] == f"{test['auc']:.4f}"
    per_class = next(df.value for df in at.dataframe if "support" in df.value.columns).set_index("class")
    assert per_class.loc["hernia", "support"] == test["per_class"]["hernia"]["support"]
    assert list(per_class.columns[:1]) == ["support"]  # positives first, beside every per-class number
    assert at.code[0].value == "epoch 1 done\nepoch 2 done"
    files = next(df.value for df in at.dataframe if "bytes" in df.value.columns).set_index("file")
    assert files.loc["config.json", "bytes"] == (run_dir / "config.json").stat().st_size
    assert "test_scores.npz" in files.index
    assert len(at.get("vega_lite_chart")) == 1  # the run's curves


def test_without_a_link_it_offers_a_run_and_puts_it_in_the_url(open_page, data_root, runs_copy):
    at = run_page(open_page, data_root, runs_copy[28].parent)
    assert not at.exception
    chosen = at.selectbox(key="run_page_run").value
    assert chosen in {p.name for p in runs_copy.values()} and at.query_params["run"] == chosen
    at.selectbox(key="run_page_run").set_value(runs_copy[28].name).run()
    assert at.query_params["run"] == runs_copy[28].name


def test_an_unknown_run_in_the_link_is_said_not_a_traceback(open_page, data_root, runs_copy):
    at = run_page(open_page, data_root, runs_copy[28].parent, "no-such-run")
    assert not at.exception
    assert any("The run this link names is not in" in w for w in texts(at.warning))


def test_no_runs_is_guidance(open_page, data_root, tmp_path):
    (tmp_path / "none").mkdir()
    at = run_page(open_page, data_root, tmp_path / "none")
    assert not at.exception and any("No runs in" in i for i in texts(at.info))


def test_a_runs_folder_that_does_not_exist_is_said_so(open_page, data_root, tmp_path):
    at = run_page(open_page, data_root, tmp_path / "checkpoitns")  # a typo
    assert not at.exception and not at.info
    assert texts(at.error) == [f"The runs folder {tmp_path / 'checkpoitns'} does not exist. Choose the folder that "
                               "holds your runs in the sidebar (a typo?); training in a folder that does not exist "
                               "yet creates it."]


def test_reports_page_lists_and_shows_a_built_study(open_page, data_root, finished_runs, tmp_path):
    out = tmp_path / "reports" / "demo-study"
    report = build_report(list(finished_runs.values()), out, measure_inference_time=False)
    at = open_page("reports.py", data_root, tmp_path / "runs")
    at.session_state["reports_dir"] = str(tmp_path / "reports")
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="reports_pick").value == out
    assert at.header[0].value == report.name
    assert any(report.data_warning == w for w in texts(at.warning))  # not ChestMNIST: said first
    assert len(at.dataframe) == len(report.tables())
    assert [i.proto.imgs[0].caption for i in at.get("image")] == [k.replace("_", " ") for k, p in report.figures.items()
                                                               if p.is_file()]


def test_reports_page_with_no_reports_says_how_to_build_one(open_page, data_root, tmp_path):
    at = open_page("reports.py", data_root, tmp_path / "runs")
    at.session_state["reports_dir"] = str(tmp_path / "nothing")
    at.run()
    assert not at.exception and any("python -m core.study" in i for i in texts(at.info))


def test_the_page_title_is_the_navigation_name():
    """The navigation said "Run details" and the page "Run" (issue #24): one name."""
    import ast

    from tests.conftest import REPO

    tree = ast.parse((REPO / "app.py").read_text())
    nav = {Path(n.args[0].value).name: next(k.value.value for k in n.keywords if k.arg == "title")
           for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "Page"}
    titles = {p.name: next(n.args[0].value for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Call)
                           and getattr(n.func, "attr", "") == "title" and n.args and isinstance(n.args[0], ast.Constant))
              for p in (REPO / "pages").glob("*.py") if p.name in nav}
    assert titles["run.py"] == nav["run.py"]


def test_name_notes_and_tags_are_saved_and_shown_in_the_lists_and_on_compare(open_page, data_root, runs_copy):
    from core.runs import annotations as A

    run_dir = runs_copy[28]
    at = run_page(open_page, data_root, run_dir.parent, run_dir.name)
    at.text_input(key=f"run_name_{run_dir.name}").input("baseline")
    at.text_area(key=f"run_notes_text_{run_dir.name}").input("lr too high?\n[link](http://x)")
    at.text_input(key=f"run_tags_{run_dir.name}").input("sweep, keep")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception and not at.error
    assert A.read(run_dir) == A.Annotations("baseline", "lr too high?\n[link](http://x)", ("keep", "sweep"))
    assert "Saved." in texts(at.success) and run_dir.exists()  # renamed for display; the folder stays
    assert any(m.value.startswith("**baseline · #keep #sweep · 28 px") for m in at.markdown)
    assert "lr too high?\n[link](http://x)" in [t.value for t in at.text]  # plain text, never markdown
    # A control character is refused with the reason; what was saved stays.
    at.text_input(key=f"run_name_{run_dir.name}").input("bell\x07")
    next(b for b in at.button if b.label == "Save").click().run()
    assert any(e.startswith("Not saved: A run's name") for e in texts(at.error))
    assert A.read(run_dir).name == "baseline"

    compare = open_page("compare.py", data_root, run_dir.parent).run()
    assert not compare.exception and not compare.error, [e.value for e in compare.error]
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False) for c in compare.get("vega_lite_chart")]
    assert any('"28 px · res-cnn · baseline"' in s for s in specs)  # the curves' colour key
    options = compare.multiselect(key="compare_runs").proto.options
    assert any(o.startswith("baseline · #keep #sweep · 28 px") for o in options), options


def test_a_run_folders_model_shows_as_text_not_markup(open_page, data_root, runs_copy):
    """config.json is read from a folder anyone may have sent: a model named like a link, emphasis, HTML or code is
    shown as it is. CommonMark renders a backslash-escaped punctuation character literally, so the line must hold
    no such character unescaped, and undoing the escapes must give the name back."""
    import re

    run_dir = runs_copy[64]
    config = json.loads((run_dir / "config.json").read_text())
    model = "[x](http://evil.example) *big* <b>b</b> `c` $x$ :material/home:"
    config["train"]["model"] = model
    runs.write_json(run_dir / "config.json", config)
    at = run_page(open_page, data_root, run_dir.parent, run_dir.name)
    assert not at.exception
    (line,) = [m for m in texts(at.markdown) if "State:" in m]
    label = line.split("**")[1]
    assert not re.search(r"(?<!\\)[\[\]()<>*`$:]", label), label
    assert model in re.sub(r"\\(.)", r"\1", label), label
