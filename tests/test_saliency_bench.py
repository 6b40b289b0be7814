"""`python -m bench.saliency MODEL:SIZE`: one case of the full bench's pointing game, one JSON line each."""
import json

import pytest

from bench import saliency


def test_one_case_gives_the_full_runs_figures(capsys):
    assert saliency.main(["seed-cnn:28", "--setup", "400,3,64", "--seed", "1"]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    f = json.loads(line)
    assert (f["model"], f["size"], f["setup"], f["seed"], f["layer"]) == ("seed-cnn", 28, [400, 3, 64], 1, "features.7")
    assert 0.5 < f["auc"] <= 1.0 and 0.0 <= f["rate"] <= 1.0 and f["n"] > 50
    # every stage candidate under both weightings, the declared layer among them
    assert any(k.startswith("features.7 ") for k in f["stages"]) and all(len(v) == 2 for v in f["stages"].values())
    assert "seed-cnn 28 px (400 x 3, batch 64, seed 1): pointing" in err


def test_checks_per_method_at_a_case(capsys):
    """--checks K adds each method's randomisation cascade and deletion/insertion areas with their baselines."""
    assert saliency.main(["res-cnn:28", "--setup", "400,3,64", "--checks", "4"]) == 0
    f = json.loads(capsys.readouterr()[0])
    assert set(f["checks"]) == {"grad-cam", "integrated-gradients", "occlusion", "guided-grad-cam"}
    for c in f["checks"].values():
        assert c["images"] == 4 and len(c["rho"]) >= 2 and all(-1 <= r <= 1 for r in c["rho"])
        assert all(0 <= c[k] <= 1 for k in ("deletion", "random_deletion", "insertion", "random_insertion"))


@pytest.mark.parametrize("args,hint", [(["seed-cnn:32"], "MODEL:SIZE"), (["vgg:28"], "MODEL:SIZE"),
                                       (["seed-cnn"], "MODEL:SIZE"),
                                       (["seed-cnn:28", "--setup", "400,3"], "IMAGES,EPOCHS"),
                                       (["seed-cnn:28", "--setup", "400,0,64"], "IMAGES,EPOCHS")])
def test_bad_input_exits_2_saying_what_to_write(args, hint, capsys):
    with pytest.raises(SystemExit) as e:
        saliency.main(args)
    assert e.value.code == 2 and hint in capsys.readouterr().err
