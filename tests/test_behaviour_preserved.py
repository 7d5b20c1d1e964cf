"""The engine refactor (issue 15) keeps every number: a short run's per-epoch losses and
verified errors, written down from the code before it, on data the test writes itself."""

import csv

import pytest
from conftest import compose_train, tiny_run_overrides, write_mnist_like

from certlight.runs.pipeline import train

# Recorded with the code of commit "DDP test: train/* epoch metrics average every rank's
# examples" (before the engine refactor): per epoch (train/loss, test/verified_err, then
# named val/verified_err).
REFERENCE = {
    "ibp": [(2.387523651123047, 1.0), (1.7797389030456543, 1.0), (1.343076467514038, 1.0)],
    "crown_ibp": [(2.296133518218994, 1.0), (2.260197639465332, 0.0), (1.7270275354385376, 0.0)],
}


def per_epoch(run_dir):
    rows = list(csv.DictReader(open(next(run_dir.glob("csv/*/metrics.csv")))))
    loss = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    verified = [float(r["test/verified_err"]) for r in rows if r.get("test/verified_err")]
    return list(zip(loss, verified))


@pytest.fixture(scope="module")
def thousand_examples(tmp_path_factory):
    return write_mnist_like(tmp_path_factory.mktemp("data1000"), n_train=1000, n_test=200, seed=3)


@pytest.mark.parametrize("method", ["ibp", "crown_ibp"])
def test_a_short_run_gives_the_recorded_numbers(method, thousand_examples, tmp_path):
    overrides = tiny_run_overrides(
        thousand_examples, f"method={method}", "trainer.max_epochs=3", "schedule.ramp_epochs=2", "dataset.batch_size=100",
        "reweight.gamma=5", "auto_eps.eps_maxoff=0.1", "eps.train=0.15", "eps.eval=0.1", "optimizer.lr=0.005",
    )
    train(compose_train(overrides, tmp_path), tmp_path)
    got = per_epoch(tmp_path)
    for (loss, verified), (want_loss, want_verified) in zip(got, REFERENCE[method], strict=True):
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert verified == want_verified
