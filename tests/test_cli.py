"The console script end to end on the smoke profile (tiny random Llama, synthetic task)."
import json, subprocess, sys
from pathlib import Path

import pytest

from genome_nb.cli import main
from genome_nb.profiles import Profile, load_profile

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_smoke_prints_table_and_writes_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "genome_nb.cli", "quickstart", "--profile", "smoke", "--seed", "42", "--seed", "41",
                          "--results", str(tmp_path / "results"), "--figures", str(tmp_path / "figs")],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                                                      "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr[-2000:]
    for m in ("best_single", "expert_fusion", "genome", "genome_plus"):
        assert f"| {m} | 42 |" in out.stdout
        final = json.loads((tmp_path / "results" / "smoke" / "quickstart" / f"{m}-toy-s42" / "final.json").read_text())
        assert 0.0 <= final["best"]["test"]["toy"] <= 1.0
    assert (tmp_path / "figs" / "quickstart_smoke_toy_s42.png").stat().st_size > 1000
    # every run scores through the profile's one shared cache, so the second seed's Best Single scores no expert again
    runs = tmp_path / "results" / "smoke" / "quickstart"
    assert (tmp_path / "results" / "smoke" / "_cache" / "scores.jsonl").is_file()
    assert not any((d / "cache").exists() for d in runs.iterdir())
    second = json.loads((runs / "best_single-toy-s41" / "budget.json").read_text())["evaluator"]
    assert second["evaluations"] == 0 and second["cache_hits"] > 0
    # run again on the same results folder: it says plainly that it reuses the finished runs, and computes nothing
    again = subprocess.run([sys.executable, "-m", "genome_nb.cli", "quickstart", "--profile", "smoke", "--seed", "42",
                            "--results", str(tmp_path / "results"), "--figures", str(tmp_path / "figs")],
                           capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                                                        "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "reusing 4 finished run(s)" in again.stdout and "| genome_plus | 42 |" in again.stdout


def test_bad_profiles_are_rejected_before_any_work(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(dict(name="mine", base="tiny-random", genome=dict(gene_mutation_rate=1.2))))
    with pytest.raises(ValueError, match="gene_mutation_rate"):
        main(["evolve", "--profile", str(p), "--results", str(tmp_path)])
    p.write_text(json.dumps(dict(name="mine", base="tiny-random", baselines=dict(lorahub=dict(budgett=3)))))
    with pytest.raises(ValueError, match="budgett"):
        load_profile(p)
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("cpu-smal")
    assert not any((tmp_path).glob("*/*/*/final.json"))


def test_run_all_rejects_bad_jobs_and_experiments_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="--jobs 0"):
        main(["run-all", "--profile", "smoke", "--jobs", "0", "--results", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="unknown experiment"):
        main(["run-all", "--profile", "smoke", "--only", "single_tsk", "--jobs", "2", "--results", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- S1: the CPU pool, leave-target-out

def test_leave_target_out_pool_drops_and_refuses_the_targets_own_expert():
    from genome_nb.profiles import Profile
    from genome_nb.runs import check_pool, pool_for
    from genome_nb.tasks import get_task
    prof = Profile("t", base="tiny-random", pool="tasks", leave_target_out=True)
    experts = {"csqa": object(), "qasc": object(), "codah": object()}
    tasks = [get_task("csqa")]
    assert sorted(pool_for(prof, experts, tasks)) == ["codah", "qasc"]
    check_pool(prof, pool_for(prof, experts, tasks), tasks)            # the filtered pool runs
    with pytest.raises(ValueError, match=r"target task\(s\) \['csqa'\]"):
        check_pool(prof, experts, tasks)                                # the target's own expert refuses to run
    keep = Profile("t", base="tiny-random", pool="tasks", leave_target_out=False)
    assert sorted(pool_for(keep, experts, tasks)) == ["codah", "csqa", "qasc"]
    check_pool(keep, experts, tasks)
    with pytest.raises(ValueError, match="pool"):
        Profile("t", base="tiny-random", pool="mine")


def test_profile_mode_per_task_is_checked():
    from genome_nb.profiles import Profile
    Profile("t", base="tiny-random", mode={"csqa": "cloze_calibrated", "arc_c": "choice"})
    with pytest.raises(ValueError, match="task 'csqa': must be one of"):
        Profile("t", base="tiny-random", mode={"csqa": "cloze_calibratd"})
    with pytest.raises(ValueError, match="unknown task 'csqb'"):
        Profile("t", base="tiny-random", mode={"csqb": "cloze"})


def test_released_pool_is_found_from_any_working_folder(tmp_path, monkeypatch):
    "The released CPU pool is the repository's, not the working folder's: a quickstart run from elsewhere must not retrain."
    from genome_nb.profiles import PROFILES
    from genome_nb.runs import released_dir
    monkeypatch.chdir(tmp_path)
    assert (released_dir(PROFILES["cpu"]) / "MANIFEST.json").is_file()
    assert tmp_path not in released_dir(PROFILES["cpu"]).parents


def test_workers_flag_scores_on_a_ray_pool_with_the_same_result(tmp_path, capsys):
    "--workers N puts the profile's engine in a Ray pool (15_workers); the run's final.json is the in-process one's."
    finals = {}
    for w in (0, 2):
        assert main(["baseline", "--method", "best_single", "--profile", "smoke", "--workers", str(w),
                     "--results", str(tmp_path / f"w{w}")]) == 0
        finals[w] = json.loads((tmp_path / f"w{w}" / "smoke" / "baseline" / "best_single-toy-s41" / "final.json").read_text())
        finals[w].pop("seconds", None)
    assert finals[0] == finals[2]
    budget = json.loads((tmp_path / "w2" / "smoke" / "baseline" / "best_single-toy-s41" / "budget.json").read_text())
    assert budget["engine"]["workers"] == 2 and budget["engine"]["calls"] >= 4   # four experts, one genome a call
    with pytest.raises(ValueError, match="workers=-1"):
        main(["baseline", "--method", "best_single", "--profile", "smoke", "--workers", "-1", "--results", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
