import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, compose_train, tiny_run_overrides

from certlight.bounds.backends import NativeBounds
from certlight.evaluation import UnsoundBoundError, certify_dataset
from certlight.pipeline import train


@pytest.fixture(scope="module")
def trained_checkpoint(fake_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    cfg = compose_train(tiny_run_overrides(fake_data_root, "trainer.max_epochs=4", "eps.train=0.02", "eps.eval=0.01"), out)
    train(cfg, out)
    return out / "checkpoints" / "last.ckpt"


def run_verify(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "certlight.verify", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_verify_orders_attack_and_bounds_consistently(trained_checkpoint, fake_data_root, tmp_path):
    proc = run_verify(f"ckpt={trained_checkpoint}", f"data.root={fake_data_root}", "eps.eval=[0.0,0.01,0.03]", "pgd.steps=10", "test_subset=50", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["methods"] == ["ibp", "crown_ibp", "crown"]
    assert "| eps_eval | clean err | PGD err |" in proc.stdout
    for row in report["results"]:
        errors = row["verified_err"]
        assert row["clean_err"] <= row["pgd_err"] <= errors["best"]
        assert errors["best"] <= min(errors["ibp"], errors["crown_ibp"], errors["crown"])
    at_zero = report["results"][0]
    # at eps 0 the box is a point: every correct example is verified, by every method
    assert at_zero["verified_err"]["ibp"] == pytest.approx(at_zero["clean_err"])
    assert report["results"][-1]["verified_err"]["best"] >= report["results"][1]["verified_err"]["best"]


def test_an_unsound_bound_stops_the_evaluation(trained_checkpoint):
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    from certlight.models import dm_small

    net = dm_small()
    net.load_state_dict({k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})

    class Overconfident(NativeBounds):
        def margins(self, x, lower, upper, y, method="ibp", batchnorm=None):
            return torch.full((x.shape[0], 9), 100.0)

    x = torch.rand(20, 1, 28, 28)
    y = torch.randint(0, 10, (20,))
    with pytest.raises(UnsoundBoundError, match="verified"):
        certify_dataset(net, Overconfident(net), [(x, y)], [0.0], [1.0], [0.3], ["ibp"], pgd_steps=5)


def test_verify_names_a_missing_checkpoint(tmp_path):
    proc = run_verify(f"ckpt={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert f"checkpoint {tmp_path / 'nope.ckpt'} does not exist" in proc.stderr and "Traceback" not in proc.stderr
