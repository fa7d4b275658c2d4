"""`advrec run gan` end to end in its quick form on the real ML-100K: the protocol's split, the
report files, re-rendering from the JSON, and same seed, same numbers."""
import json

import numpy as np
import pytest

from advrec import data as D
from advrec.cli import main
from advrec.experiments import gan_report
from advrec.experiments.gan import MODELS, GANConfig, cfgan_split, run_gan


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    assert main(["run", "gan", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out, json.loads((out / "gan.json").read_text())


def test_cfgan_split_is_per_user_80_20_with_validation_inside_train():
    inter = D.implicit(D.load("ml-100k").interactions, _quiet=True)
    train, test, fit, valid = cfgan_split(inter, GANConfig(), 0)
    assert len(train) + len(test) == len(inter) == 100_000
    assert len(fit) + len(valid) == len(train)
    share = np.bincount(test.user, minlength=inter.n_users) / np.bincount(inter.user, minlength=inter.n_users)
    assert np.all(np.abs(share - 0.2) <= 0.5 / np.bincount(inter.user, minlength=inter.n_users) + 1e-9)
    pairs = lambda x: set(zip(x.user.tolist(), x.item.tolist()))  # noqa: E731
    assert not pairs(train) & pairs(test) and not pairs(fit) & pairs(valid)
    again = cfgan_split(inter, GANConfig(), 0)
    assert np.array_equal(again[1].item, test.item)
    assert not np.array_equal(cfgan_split(inter, GANConfig(), 1)[1].item, test.item)


def test_quick_run_writes_every_model_and_the_attacks(quick_run):
    out, payload = quick_run
    assert {"gan.json", "gan.md", "cfgan_losses.png", "irgan_losses.png"} <= {p.name for p in out.iterdir()}
    seed = payload["seeds"][0]
    for model in MODELS + ("IRGAN (pre-trained G)",):
        m = seed["metrics"][model]
        assert 0.0 < m["Precision@5"] <= 1.0 and 0.0 < m["nDCG@20"] <= 1.0
        assert m["Precision@20"] <= m["HR@20"]
    # the trained models beat popularity on this protocol even in the quick run
    assert seed["metrics"]["BPR-MF"]["nDCG@20"] > seed["metrics"]["ItemPop"]["nDCG@20"]
    attacked = {(a["model"], a["attack"]) for a in seed["attacks"]}
    assert attacked == {(m, a) for m in ("BPR-MF", "IRGAN", "CFGAN") for a in ("FGSM", "PGD")}
    for a in seed["attacks"]:
        assert a["eps"] > 0 and a["nDCG@20 drop"] <= 1.0
    assert "provenance" in payload and [c["check"] for c in payload["acceptance"]]
    markdown = (out / "gan.md").read_text()
    assert "CFGAN, paper" in markdown and "Embedding attacks" in markdown


def test_report_re_renders_from_its_json(quick_run):
    out, payload = quick_run
    result = gan_report.result_from_json(payload)
    assert gan_report.report_markdown(result) == (out / "gan.md").read_text()


def test_same_seed_same_numbers():
    tiny = GANConfig.quick(bpr_epochs=3, bpr_patience=2, irgan_epochs=1, irgan_pretrain_d=1, cfgan_epochs=2,
                           cfgan_patience=2, rhos=(0.5,), pgd_steps=1, progress=False)
    a, b = run_gan(tiny), run_gan(tiny)
    assert a.seeds[0].metrics == b.seeds[0].metrics
    assert a.seeds[0].attacks == b.seeds[0].attacks


def test_config_is_checked():
    for bad in (dict(seeds=()), dict(test_share=1.0), dict(cfgan_epochs=0), dict(rhos=(-1.0,)),
                dict(irgan_sampler="gumbel-max"), dict(workers=0)):
        with pytest.raises(ValueError):
            GANConfig(**bad).validate()
