import json

import pytest

from certlight.report import main as report_main
from certlight.reporting import find_result_files, markdown_table, read_records, seed_rows


def config(seed=0, gamma=0.0, maxoff=0.0, eps_train=0.4, model="dm_small", out="/x", epochs=100):
    return {
        "seed": seed,
        "data": {"root": "/data"},
        "dataset": {"name": "mnist", "batch_size": 100},
        "model": {"_target_": f"certlight.models.{model}"},
        "method": {"_target_": "certlight.modules.IBPModule"},
        "reweight": {"_target_": "certlight.losses.Reweighting", "kind": "symmetric", "gamma": gamma, "alpha": 0.1},
        "auto_eps": {"eps_maxoff": maxoff},
        "eps": {"train": eps_train, "eval": 0.3},
        "trainer": {"max_epochs": epochs},
        "callbacks": {"model_checkpoint": {"dirpath": f"{out}/checkpoints"}},
    }


def write_result(folder, cfg, clean, verified):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"config": cfg, "eps_eval": 0.3, "clean_err": clean, "verified_err": verified}))


def test_groups_runs_differing_only_in_seed_with_hand_checked_mean_and_std(tmp_path):
    # baseline, 3 seeds: verified 0.12, 0.13, 0.11 -> mean 12.00, sample std 1.00
    for seed, (clean, verified) in enumerate([(0.03, 0.12), (0.04, 0.13), (0.02, 0.11)]):
        write_result(tmp_path / f"base_{seed}", config(seed=seed, out=tmp_path / f"base_{seed}"), clean, verified)
    # both methods, 2 seeds: verified 0.10, 0.11 -> mean 10.50, std 0.71
    for seed, verified in enumerate([0.10, 0.11]):
        write_result(tmp_path / f"both_{seed}", config(seed=seed, gamma=5.0, maxoff=0.15, out=tmp_path / f"both_{seed}"), 0.03, verified)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    table = markdown_table(records, with_paper=True)
    rows = table.splitlines()[2:]
    assert len(rows) == 2
    base = next(r for r in rows if "| off | off |" in r)
    both = next(r for r in rows if "γ=5.0" in r)
    assert "| 0,1,2 | 3.00 ± 1.00 | 12.00 ± 1.00 | 3.27±0.24 | 12.00±0.35 |" in base
    assert "| 0,1 | 3.00 ± 0.00 | 10.50 ± 0.71 | 2.87±0.10 | 11.09±0.33 |" in both


def test_paper_numbers_only_beside_the_papers_schedule(tmp_path):
    write_result(tmp_path / "short", config(epochs=10), 0.05, 0.16)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    assert markdown_table(records, with_paper=True).splitlines()[2].endswith("| – | – |")


def test_runs_differing_in_anything_but_seed_are_not_pooled(tmp_path):
    write_result(tmp_path / "a", config(seed=0, eps_train=0.4), 0.03, 0.12)
    write_result(tmp_path / "b", config(seed=1, eps_train=0.35), 0.03, 0.13)
    write_result(tmp_path / "c", config(seed=2, model="dm_large"), 0.03, 0.13)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    assert len(markdown_table(records).splitlines()) == 2 + 3


def test_corrupt_and_missing_files_name_the_file(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert report_main([str(tmp_path / "bad")]) == 2
    assert f"{tmp_path / 'bad' / 'results.json'} is not valid JSON" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert f"no results.json or verify.json under {tmp_path / 'empty'}" in capsys.readouterr().err
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "results.json").write_text(json.dumps({"config": {"seed": 0}}))
    assert report_main([str(tmp_path / "partial")]) == 2
    assert "partial/results.json lacks" in capsys.readouterr().err


def test_margin_comparison_figure(tmp_path):
    for name, counts in (("vanilla", [0, 5, 30, 5, 0]), ("reweight", [5, 10, 10, 10, 5])):
        (tmp_path / name).mkdir()
        history = [{"epoch": 9, "bins": [-1, -0.5, -0.1, 0.1, 0.5, 1], "test_margin": counts}]
        (tmp_path / name / "margin_histograms.json").write_text(json.dumps(history))
    out = tmp_path / "figure3.png"
    assert report_main(["--margins", str(tmp_path / "vanilla"), str(tmp_path / "reweight"), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert report_main(["--margins", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_no_arguments_is_a_usage_error():
    with pytest.raises(SystemExit):
        report_main([])


def write_verify(folder, eps_train, rows):
    folder.mkdir(parents=True)
    results = [{"eps_eval": e, "clean_err": 0.02, "pgd_err": v / 2, "verified_err": {"ibp": v, "best": v}} for e, v in rows]
    (folder / "verify.json").write_text(json.dumps({"train_config": config(eps_train=eps_train), "methods": ["ibp"], "results": results}))


def test_grid_gives_table_1_from_verify_files(tmp_path, capsys):
    write_verify(tmp_path / "t30", 0.3, [(0.3, 0.0981), (0.35, 1.0)])
    write_verify(tmp_path / "t40", 0.4, [(0.3, 0.0866), (0.35, 0.114)])
    assert report_main([str(tmp_path), "--grid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| eps_train \\ eps_eval | 0.3 | 0.35 |"
    assert lines[2] == "| 0.3 | 9.81 | 100.00 |" and lines[3] == "| 0.4 | 8.66 | 11.40 |"


def test_runs_differing_only_in_how_they_computed_pool_with_older_runs(tmp_path):
    """A run from before bounds.compile / dataset.device_resident existed is the same setting."""
    old = config(seed=0, out=tmp_path / "old")
    new = config(seed=1, out=tmp_path / "new")
    new["bounds"] = {"backend": "native", "compile": False}
    new["dataset"]["device_resident"] = "auto"
    new["trainer"]["accelerator"] = "gpu"
    write_result(tmp_path / "old", old, 0.03, 0.11)
    write_result(tmp_path / "new", new, 0.03, 0.12)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    rows = markdown_table(records).splitlines()[2:]
    assert len(rows) == 1 and "| 0,1 | 3.00 ± 0.00 | 11.50 ± 0.71 |" in rows[0], rows


def test_a_single_seed_shows_its_value_without_a_made_up_spread(tmp_path):
    write_result(tmp_path / "one", config(seed=0, out=tmp_path / "one"), 0.0325, 0.1098)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    row = markdown_table(records).splitlines()[2]
    assert row.endswith("| 0 | 3.25 | 10.98 |") and "±" not in row


def test_seed_rows_keep_every_seed_and_parse_the_papers_numbers(tmp_path, capsys):
    for seed, verified in enumerate([0.12, 0.13, 0.11]):
        write_result(tmp_path / f"base_{seed}", config(seed=seed, out=tmp_path / f"base_{seed}"), 0.03, verified)
    write_result(tmp_path / "both_0", config(gamma=5.0, maxoff=0.15, out=tmp_path / "both_0"), 0.025, 0.10)
    write_result(tmp_path / "short", config(epochs=10, out=tmp_path / "short"), 0.05, 0.16)
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    rows = {(row.tactics, row.setting.split(",")[1].strip()): row for row in seed_rows(records)}
    base = rows[("baseline", "100 epochs")]
    assert sorted(base.verified) == pytest.approx([11.0, 12.0, 13.0]) and base.paper_verified == (12.00, 0.35)
    both = rows[("re-weight symmetric γ=5.0 α=0.1 + auto-eps 0.15", "100 epochs")]
    assert both.clean == pytest.approx([2.5]) and both.paper_clean == (2.87, 0.10)
    assert rows[("baseline", "10 epochs")].paper_verified is None
    out = tmp_path / "seeds.png"
    assert report_main([str(tmp_path), "--paper", "--plot", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and f"written {out}" in capsys.readouterr().out


def test_plot_without_result_paths_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        report_main(["--margins", str(tmp_path), "--plot", str(tmp_path / "x.png")])
