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
    # As train.py wrote it before it recorded "complete" and the examples used: a finished run.
    result = {
        "config": cfg,
        "eps_eval": 0.3,
        "epochs": cfg["trainer"]["max_epochs"],
        "clean_err": clean,
        "verified_err": verified,
    }
    (folder / "results.json").write_text(json.dumps(result))


def test_groups_runs_differing_only_in_seed_with_hand_checked_mean_and_std(tmp_path):
    # baseline, 3 seeds: verified 0.12, 0.13, 0.11 -> mean 12.00, sample std 1.00
    for seed, (clean, verified) in enumerate([(0.03, 0.12), (0.04, 0.13), (0.02, 0.11)]):
        write_result(tmp_path / f"base_{seed}", config(seed=seed, out=tmp_path / f"base_{seed}"), clean, verified)
    # both methods, 2 seeds: verified 0.10, 0.11 -> mean 10.50, std 0.71
    for seed, verified in enumerate([0.10, 0.11]):
        write_result(
            tmp_path / f"both_{seed}",
            config(seed=seed, gamma=5.0, maxoff=0.15, out=tmp_path / f"both_{seed}"),
            0.03,
            verified,
        )
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
    results = [
        {"eps_eval": e, "n": 10000, "clean_err": 0.02, "pgd_err": v / 2, "verified_err": {"ibp": v, "best": v}}
        for e, v in rows
    ]
    (folder / "verify.json").write_text(
        json.dumps({"train_config": config(eps_train=eps_train), "methods": ["ibp"], "results": results})
    )


def test_grid_gives_table_1_from_verify_files(tmp_path, capsys):
    write_verify(tmp_path / "t30", 0.3, [(0.3, 0.0981), (0.35, 1.0)])
    write_verify(tmp_path / "t40", 0.4, [(0.3, 0.0866), (0.35, 0.114)])
    assert report_main([str(tmp_path), "--grid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| eps_train \\ eps_eval | 0.3 | 0.35 |"
    assert lines[2] == "| 0.3 | 9.81 | 100.00 |" and lines[3] == "| 0.4 | 8.66 | 11.40 |"


def test_runs_differing_only_in_how_they_computed_pool_with_older_runs(tmp_path):
    """A run from before bounds.compile / dataset.device_resident / dataset.download existed is the same setting."""
    old = config(seed=0, out=tmp_path / "old")
    new = config(seed=1, out=tmp_path / "new")
    new["bounds"] = {"backend": "native", "compile": False}
    new["dataset"]["device_resident"] = "auto"
    new["dataset"]["download"] = False
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


def write_checkpoint_verify(folder, cfg, epochs, complete, n=10000, total=10000, verified=0.12):
    folder.mkdir(parents=True)
    rows = [
        {
            "eps_eval": 0.3,
            "n": n,
            "clean_err": 0.03,
            "pgd_err": 0.08,
            "verified_err": {"ibp": verified, "best": verified},
        }
    ]
    (folder / "verify.json").write_text(
        json.dumps(
            {
                "train_config": cfg,
                "epochs_completed": epochs,
                "complete": complete,
                "train_examples": 60000,
                "train_examples_total": 60000,
                "test_examples_total": total,
                "results": rows,
            }
        )
    )


def table_rows(tmp_path):
    records = [r for p in find_result_files([str(tmp_path)]) for r in read_records(p)]
    return markdown_table(records, with_paper=True).splitlines()


def test_a_checkpoint_stopped_early_is_shown_as_such_and_not_beside_the_paper(tmp_path):
    write_checkpoint_verify(tmp_path / "early", config(epochs=100), epochs=1, complete=False)
    header, _, row = table_rows(tmp_path)
    assert "| 1 of 100 |" in row and row.endswith("| – | – |")
    write_checkpoint_verify(tmp_path / "done", config(seed=1, epochs=100), epochs=100, complete=True)
    done = next(r for r in table_rows(tmp_path)[2:] if "| 100 |" in r)
    assert done.endswith("| 3.27±0.24 | 12.00±0.35 |")


@pytest.mark.parametrize("subset", ["train_subset", "test_subset"])
def test_runs_on_a_subset_are_not_set_beside_the_paper(subset, tmp_path):
    cfg = config()
    cfg["dataset"][subset] = 1000
    write_result(tmp_path / "sub", cfg, 0.03, 0.12)
    assert table_rows(tmp_path)[2].endswith("| – | – |")


def test_verify_on_part_of_the_test_set_is_not_set_beside_the_paper(tmp_path):
    write_checkpoint_verify(tmp_path / "part", config(), epochs=100, complete=True, n=500, total=10000)
    assert table_rows(tmp_path)[2].endswith("| – | – |")


def test_rows_that_would_print_alike_name_the_keys_that_split_them(tmp_path):
    for name, batch in (("a", 100), ("b", 50)):
        cfg = config(out=tmp_path / name)
        cfg["dataset"]["batch_size"] = batch
        write_result(tmp_path / name, cfg, 0.03, 0.12)
    rows = table_rows(tmp_path)
    assert rows[0].endswith("| differs in |")
    assert sorted(r.rsplit("|", 2)[1].strip() for r in rows[2:]) == ["dataset.batch_size=100", "dataset.batch_size=50"]


def test_a_run_and_its_verify_file_print_as_two_rows_saying_which_is_which(tmp_path):
    write_result(tmp_path / "run", config(out=tmp_path / "run"), 0.03, 0.12)
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    result.update(
        complete=True, train_examples=60000, train_examples_total=60000, test_examples=10000
    )  # as train.py writes it today
    (tmp_path / "run" / "results.json").write_text(json.dumps(result))
    write_checkpoint_verify(
        tmp_path / "verified", config(out=tmp_path / "run"), epochs=100, complete=True, verified=0.11
    )
    rows = table_rows(tmp_path)
    assert rows[0].endswith("| differs in |")
    assert sorted((r.split("|")[-5].strip(), r.rsplit("|", 2)[1].strip()) for r in rows[2:]) == [
        ("11.00", "from verify.json"),
        ("12.00", "from results.json"),
    ]


def test_two_runs_of_the_same_seed_are_refused_not_pooled(tmp_path, capsys):
    write_result(tmp_path / "first", config(seed=0, out=tmp_path / "first"), 0.03, 0.12)
    write_result(tmp_path / "again", config(seed=0, out=tmp_path / "again"), 0.03, 0.13)
    assert report_main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "are two runs of seed 0 in the same setting" in error and str(tmp_path / "first" / "results.json") in error


def test_labels_must_match_the_runs_and_the_plot_folder_must_exist(tmp_path, capsys):
    write_result(tmp_path / "run", config(), 0.03, 0.12)
    (tmp_path / "run" / "margin_histograms.json").write_text(
        json.dumps([{"epoch": 0, "bins": [-1, 0, 1], "test_margin": [1, 2]}])
    )
    with pytest.raises(SystemExit):
        report_main(["--margins", str(tmp_path / "run"), "--labels", "a", "b"])
    assert "--labels gives 2 labels for 1 run" in capsys.readouterr().err
    assert report_main([str(tmp_path / "run"), "--plot", str(tmp_path / "missing" / "seeds.png")]) == 2
    assert (
        f"--plot {tmp_path / 'missing' / 'seeds.png'}: folder {tmp_path / 'missing'} does not exist"
        in capsys.readouterr().err
    )


def write_verify_with_cascade(run_dir):
    """A verify.json whose IBP-best verified error is 12 % and whose cascade's is 10.5 %."""
    write_checkpoint_verify(run_dir, config(), epochs=100, complete=True, verified=0.12)
    data = json.loads((run_dir / "verify.json").read_text())
    data["results"][0]["verified_err"]["cascade"] = 0.105
    (run_dir / "verify.json").write_text(json.dumps(data))


def test_a_table_can_report_any_verifier_the_files_hold(tmp_path, capsys):
    write_verify_with_cascade(tmp_path / "run")
    assert report_main([str(tmp_path), "--verifier", "cascade"]) == 0
    out = capsys.readouterr().out
    assert "verified err (%, cascade)" in out and "| 10.50 |" in out
    assert report_main([str(tmp_path), "--verifier", "alpha_crown"]) == 2
    assert "has no verified error by 'alpha_crown'; it has: ibp, best, cascade" in capsys.readouterr().err


def test_the_seed_figure_names_the_verifier_it_plots(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # keep text as text in the SVG
    write_verify_with_cascade(tmp_path / "run")
    out = tmp_path / "seeds.svg"
    assert report_main([str(tmp_path), "--verifier", "cascade", "--plot", str(out)]) == 0
    assert "verified error (%, cascade)" in out.read_text()
