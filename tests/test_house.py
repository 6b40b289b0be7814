"""The house rules that keep the code base readable, checked on the code itself (issue "One house").

Each check reads the source, so it fails the moment a change breaks the rule: a run file's name
spelled outside core/runs/record.py, an import cycle in core/ (command lines included), a package
without a docstring saying its job, a module named for its folder, a module or function grown past
what a reader can hold, a benchmark timing its own copy of the training step, or torch creeping into the
modules the app's first page imports.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from core.runs import annotations
from core.runs import record as runs

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*ROOT.glob("core/**/*.py"), *ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("bench/*.py"),
               ROOT / "app.py"])
RECORD = ROOT / "core" / "runs" / "record.py"
MAX_MODULE_LINES = 520  # "about 500"
MAX_FUNCTION_LINES = 85  # "about 80"


def run_file_names() -> set[str]:
    """Every file name core.runs.record writes into a run folder, read from that module itself."""
    names = runs.own_file_names(ROOT / "no-such-run")
    return {n for n in names if "." in n.strip(".")} | {runs.MARKER}


# Each run-folder file has one owner, the only module that spells its name: record for what training and
# evaluation write, annotations for what a person writes about a run.
OWNERS = {RECORD: run_file_names(), ROOT / "core" / "runs" / "annotations.py": annotations.file_names()}


def test_run_file_names_are_spelled_only_in_their_owner():
    assert {"config.json", "metrics.jsonl", "best.pt", "test_scores.npz", ".chestmnist-run"} <= OWNERS[RECORD]
    assert not set.intersection(*OWNERS.values())
    found = {(str(p.relative_to(ROOT)), n) for owner, names in OWNERS.items() for p in CODE if p != owner
             for n in names if n in p.read_text()}
    assert not found, f"run file names outside their owner module: {sorted(found)}"


def core_imports(path: Path) -> set[str]:
    """The core modules `path` imports, at any depth: function-level imports and `if __name__ == "__main__":`
    blocks count (neither may hide a cycle)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "core":
                out |= {f"core.{a.name}" for a in node.names}
            elif node.module.startswith("core."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("core.")}
    return out


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def test_core_has_no_import_cycle():
    graph = {module_name(p): core_imports(p) for p in ROOT.glob("core/**/*.py")}
    # A package's import of its own submodules is how it is assembled, not a cycle through it.
    graph = {m: {d for d in deps if d in graph and not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:  # d is on the path being walked: the path from d back to d is a cycle
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules importing each other are reported."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("from core import b\n")
    (tmp_path / "core" / "b.py").write_text("def f():\n    from core.a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"core\.a -> core\.b -> core\.a"):
        test_core_has_no_import_cycle()


@pytest.mark.parametrize("path", [p for p in CODE if p.parent.name != "bench"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_readable(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name} has {len(lines)} lines; split it by concern"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {path.name}: {long}"


@pytest.mark.parametrize("bench", ["pipeline", "compute"])
def test_benchmarks_time_cores_training_step_not_a_copy(bench):
    assert "core.train.step" in core_imports(ROOT / "bench" / f"{bench}.py")
    tree = ast.parse((ROOT / "bench" / f"{bench}.py").read_text())
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "train_step" for n in ast.walk(tree))
    # A hand-written backward is allowed only in the baseline it names (medmnist's getting-started step).
    own_steps = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and not f.name.startswith("medmnist")
                 and any(isinstance(c, ast.Call) and getattr(c.func, "attr", None) == "backward" for c in ast.walk(f))]
    assert not own_steps, f"bench/{bench}.py times its own training step in {own_steps}; call core.train.step.train_step"


def test_the_first_page_imports_no_torch():
    """What the app imports before its first paint stays light: no torch, no scikit-learn (seconds each)."""
    code = ("import sys, streamlit; import ui.common, pages.home, core.data.chestmnist, core.runs.record, core.runs.folder, "
            "core.runs.summary, core.data.provenance; "
            "heavy = sorted(m for m in ('torch', 'sklearn', 'medmnist') if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_the_train_page_imports_no_torch_scikit_learn_or_matplotlib():
    """What the Train page imports before its recipe is drawn (its module-level imports) stays clear of
    torch, scikit-learn and matplotlib, seconds each on a small machine: the recipe draws while app.py's
    warm-up imports them; building, timing and training a model import them when asked."""
    tree = ast.parse((ROOT / "pages" / "train.py").read_text())
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
               and getattr(n, "module", None) != "__future__"]
    assert any("core.train.recipe" in i or "recipe as C" in i for i in imports)  # the recipe's own import is among them
    code = "\n".join([*imports, "import sys", "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"])
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


PACKAGES = sorted(p.parent for p in ROOT.glob("core/*/__init__.py"))


def test_core_is_a_handful_of_packages_each_saying_its_job():
    """core/ holds sub-packages by job (data, models, train, runs, metrics, evaluate, explain, study) and a
    few shared modules; each package's __init__ says what it does and imports nothing heavy."""
    loose = sorted(p.name for p in ROOT.glob("core/*.py") if p.name != "__init__.py")
    assert len(loose) <= 6, f"modules loose in core/: {loose}; put each in the package of its job"
    assert len(PACKAGES) >= 6
    for pkg in PACKAGES:
        init = ast.parse((pkg / "__init__.py").read_text())
        doc = ast.get_docstring(init)
        assert doc and len(doc.split()) >= 8, f"core/{pkg.name}/__init__.py has no docstring saying its job"
        heavy = [a.name for n in ast.walk(init) if isinstance(n, ast.Import) for a in n.names]
        assert not heavy, f"core/{pkg.name}/__init__.py imports {heavy}: export names lazily (core.lazy)"


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_module_names_do_not_repeat_their_package(pkg):
    """A module is named for its job inside its package (core/runs/folder.py, not core/runs/runs_folder.py)."""
    prefixed = [p.name for p in pkg.glob("*.py") if p.stem.startswith(pkg.name.rstrip("s"))]
    assert not prefixed, f"core/{pkg.name}: {prefixed} repeat the package's name"


def test_every_package_export_resolves():
    """Each name a package's __init__ lists is defined where it says (a renamed function fails here, not in a notebook)."""
    code = ("import importlib, pathlib\n"
            "for p in sorted(pathlib.Path('core').glob('*/__init__.py')):\n"
            "    m = importlib.import_module('core.' + p.parent.name)\n"
            "    [getattr(m, n) for n in m.__all__]\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_no_package_exports_a_name_its_submodule_shadows():
    """`core.train.estimate` as both a function and a module: once the module is imported, the package's
    attribute is the module, and `from core.train import estimate` returns it instead of the function."""
    clashes = {}
    for pkg in PACKAGES:
        exported: set[str] = set()
        tree = ast.parse((pkg / "__init__.py").read_text())
        for d in (n for n in ast.walk(tree) if isinstance(n, ast.Dict)):
            for v in d.values:
                exported |= set(ast.literal_eval(v))
        modules = {p.stem for p in pkg.glob("*.py")}
        if exported & modules:
            clashes[pkg.name] = sorted(exported & modules)
    assert not clashes, f"names exported under a submodule's name: {clashes}"


def test_only_core_env_reads_the_environment():
    """Every variable the explorer reads is named, with its default, in core/env.py (issue #26: six variables
    read in seven modules were listed together only in tests/conftest.py)."""
    readers = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("core/**/*.py")
                     if p.name != "env.py" and any(s in p.read_text() for s in ("os.environ.get(", "os.getenv(", "environ[")))
    assert not readers, f"environment read outside core/env.py: {readers}"


def test_core_env_treats_blank_as_unset(monkeypatch):
    from core import env
    monkeypatch.setenv(env.ROOT, "   ")
    monkeypatch.setenv(env.RUNS, "")
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert env.data_root() is None and env.runs_dir() == Path(env.DEFAULT_RUNS) and env.world_size() == 1


def test_every_error_a_user_can_fix_shares_one_base():
    """Command lines and pages catch `UserError` once instead of the same tuple of three types in eight places."""
    code = ("import importlib, pathlib, inspect\n"
            "from core.errors import UserError\n"
            "bad = []\n"
            "for p in sorted(pathlib.Path('core').rglob('*.py')):\n"
            "    if p.name == '__main__.py': continue\n"
            "    m = importlib.import_module('.'.join(p.with_suffix('').parts).removesuffix('.__init__'))\n"
            "    bad += [f'{m.__name__}.{n}' for n, c in vars(m).items() if inspect.isclass(c) and issubclass(c, Exception)\n"
            "            and c.__module__ == m.__name__ and n.endswith('Error') and not issubclass(c, UserError)]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
