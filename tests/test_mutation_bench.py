"""bench/mutation.py without running pytest per mutant: its mutants still match the code, and a mutant is
applied to the copy only, judged by the tests' exit status and always undone."""
import subprocess
from types import SimpleNamespace

import pytest

from bench import mutation


@pytest.mark.parametrize("m", mutation.MUTANTS, ids=lambda m: f"{m.module}: {m.why}")
def test_every_mutant_matches_its_module_once_and_changes_it(m):
    source = (mutation.ROOT / "core" / "metrics" / f"{m.module}.py").read_text()
    assert source.count(m.old) == 1 and m.old != m.new and m.module in mutation.TESTS


def test_a_mutant_is_judged_by_the_tests_and_undone(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "core" / "metrics").mkdir(parents=True)
    path = tree / "core" / "metrics" / "paired.py"
    path.write_text("x = 1\n")
    seen = []

    def fake_run(cmd, cwd, **kw):
        seen.append((path.read_text(), cmd[-2:], cwd))
        return SimpleNamespace(returncode=len(seen) - 1)  # the first run passes, the second fails

    monkeypatch.setattr(subprocess, "run", fake_run)
    mutant = mutation.Mutant("paired", "x = 1", "x = 2", "off by one")
    assert mutation.run_mutant(tree, mutant)["status"] == "survived"
    assert mutation.run_mutant(tree, mutant)["status"] == "killed"
    assert seen[0] == ("x = 2\n", list(mutation.TESTS["paired"]), tree) and path.read_text() == "x = 1\n"
    assert mutation.run_mutant(tree, mutation.Mutant("paired", "y = 1", "y = 2", "gone"))["status"] == "stale"
