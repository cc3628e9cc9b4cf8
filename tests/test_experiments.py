"""The experiment batch: `genome-nb run-all --profile smoke` end to end (every notebook, every method), then the
analysis outputs it must leave behind; and the plans, cost estimates and notebooks without running anything."""
import json
from pathlib import Path

import nbformat
import pytest

from genome_nb.analysis import load_results, METHOD_LABELS
from genome_nb.hparams import hparam_stats
from genome_nb.cli import experiment_notebooks, run_all
from genome_nb.experiments import ABLATIONS, ALL_METHODS, EXPERIMENTS, estimate_batch, hparam_draws, plan_experiment
from genome_nb.reports import write_tables

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "nbs" / "experiments"
TABLES = ["single_task_table1", "single_task_table12", "single_task_paired", "single_task_paired_best", "single_task_budget",
          "equal_budget_table1", "equal_budget_table12", "equal_budget_paired", "equal_budget_paired_best", "equal_budget_budget",
          "multi_task_table2", "zero_shot_table3",
          "zero_shot_table3_macro", "zero_shot_table4", "scaling_figure2_toy", "ablation_table5", "time_efficiency_table6",
          "hparam_sweep_sweep", "hparam_analysis_table9", "hparam_analysis_table10", "validation_size_table13_toy",
          "racing_toy", "racing_toy_paired", "fidelity_before_after"]
FIGURES = ["figure2_scaling.png", "fitness_single_task.png", "hparam_sweep.png"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    "One smoke batch for the module: every experiment notebook, every method, one torch thread, two notebooks at once."
    tmp = tmp_path_factory.mktemp("batch")
    times = run_all("smoke", tmp / "results", tmp / "figures", progress=False, threads=1, jobs=2)
    return tmp, times


def test_every_notebook_ran_and_left_a_small_executed_copy(smoke):
    tmp, times = smoke
    assert list(times) == list(experiment_notebooks(NB_DIR))
    for name in times:
        copy = tmp / "results" / "smoke" / f"{name}.ipynb"
        assert copy.stat().st_size < 200_000, f"{copy} is {copy.stat().st_size} bytes"
        nb = nbformat.read(copy, as_version=4)
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert json.loads((tmp / "results" / "smoke" / "run_all.json").read_text()).keys() == times.keys()


def test_tables_and_figures_exist_and_regenerate_byte_identically(smoke):
    tmp, _ = smoke
    tdir = tmp / "results" / "smoke" / "tables"
    before = {p.name: p.read_bytes() for p in tdir.iterdir()}
    assert sorted(before) == sorted(f"{t}{ext}" for t in TABLES for ext in (".md", ".tex"))
    t1 = before["single_task_table1.md"].decode()
    assert all(f"| {METHOD_LABELS[m]} |" in t1 for m in ALL_METHODS), t1      # every method has its row
    assert "- vs Best Single" in t1 and "- vs Model Swarms" in t1
    assert "GENOME+ (best individual)" in t1                                      # GENOME+ both ways
    eb = before["equal_budget_budget.md"].decode()                               # every capped run within its budget
    assert all(float(r.split("|")[3]) <= 6 for r in eb.splitlines()[4:] if r.startswith("| ")), eb   # column 'evaluations' 
    t5 = before["ablation_table5.md"].decode()
    assert t5.count("- vs GENOME+") == len(ABLATIONS) - 1
    assert "toy → toy2" in before["zero_shot_table3.md"].decode()
    fb = before["fidelity_before_after.md"].decode()        # toy is a choice task: no Pack of LLMs arm
    assert fb.count("| space=lora |") == 2 and fb.count("| objective=accuracy |") == 1 and "Pack of LLMs" not in fb, fb
    for f in FIGURES: assert (tmp / "figures" / "smoke" / f).stat().st_size > 5_000
    write_tables(tmp / "results", "smoke")                                       # from results/ alone
    assert {p.name: p.read_bytes() for p in tdir.iterdir()} == before


def test_hparam_stats_and_transfer_come_from_the_run_directories(smoke):
    tmp, _ = smoke
    sweep = load_results(tmp / "results" / "smoke" / "hparam_sweep")
    assert len(sweep) == EXPERIMENTS["hparam_sweep"]["defaults"]["smoke"]["runs"]
    assert sweep[["cr", "imr", "gmr"]].values.tolist() == [list(d) for d in hparam_draws(len(sweep), 47)]
    assert sweep.test_ensemble.notna().all() and (sweep.opt_seconds > 0).all()
    hs = hparam_stats(sweep)
    assert len(hs.correlations) == 9 and len(hs.regression) == 12
    assert hs.regression[hs.regression.panel.str.contains("Time")].coef.notna().all()
    zs = load_results(tmp / "results" / "smoke" / "zero_shot")
    tr = zs[zs.transfer_from.notna()]
    assert set(zip(tr.transfer_from, tr.task)) == {("toy", "toy2"), ("toy3", "toy4")}
    assert tr.test_best.between(0, 1).all()
    ab = load_results(tmp / "results" / "smoke" / "ablation")
    assert sorted(ab.variant) == sorted(ABLATIONS)


def test_a_second_run_all_finds_everything_done(smoke):
    tmp, _ = smoke
    finals = sorted((tmp / "results" / "smoke" / "single_task").glob("*/final.json"))
    stamps = [p.stat().st_mtime_ns for p in finals]
    run_all("smoke", tmp / "results", tmp / "figures", only=["single_task"], progress=False, threads=1)
    assert [p.stat().st_mtime_ns for p in finals] == stamps
    nb = nbformat.read(tmp / "results" / "smoke" / "single_task.ipynb", as_version=4)
    log = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert log.count(": done (") == len(finals) and ": ran (" not in log


def test_notebooks_are_clean_parameterised_and_match_the_registry():
    nbs = experiment_notebooks(NB_DIR)
    assert set(nbs) == set(EXPERIMENTS) | {"hparam_analysis", "figures"}
    for name, path in nbs.items():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path}: first code cell is not tagged 'parameters'"
        for p in ("profile", "root", "figures"): assert f"\n{p} = " in "\n" + code[0].source, f"{path}: no parameter {p}"
        assert not any(c.outputs or c.execution_count for c in code), f"{path}: has outputs (run nbdev_clean)"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{path}: no title"


def test_plans_for_every_profile_and_the_cpu_small_budget():
    for prof in ("smoke", "cpu-small", "cpu", "paper"):
        for name in EXPERIMENTS:
            plan = plan_experiment(name, prof)
            assert plan.specs and len({str(plan.run_dir(s, "r")) for s in plan.specs}) == len(plan.specs)
    assert len(plan_experiment("hparam_sweep", "paper").specs) == 500
    assert len(plan_experiment("single_task", "paper").specs) == 12 * 11 * 5     # Table 1's ten and the Direct Top-3 Ensemble
    est = estimate_batch("cpu-small")
    assert est.hours.iloc[-1] <= 3.0, est
    with pytest.raises(ValueError, match="no defaults for profile"):
        from genome_nb.profiles import Profile
        plan_experiment("single_task", Profile("mine", base="tiny-random"))


@pytest.mark.parametrize("profile", ["cpu-small", "cpu"])
def test_the_committed_tables_regenerate_byte_identically(tmp_path, profile):
    "A profile's tables in the repository come from its committed run directories alone (no model, no cache)."
    import shutil
    src = ROOT / "results" / profile
    committed = {p.name: p.read_bytes() for p in (src / "tables").iterdir()}
    assert any(n.startswith("single_task_") for n in committed), sorted(committed)
    shutil.copytree(src, tmp_path / profile, ignore=shutil.ignore_patterns(
        "tables", "_cache", "cache", "adapters", "checkpoint*", ".lock", "*.ipynb", "experts"))
    write_tables(tmp_path, profile)
    assert {p.name: p.read_bytes() for p in (tmp_path / profile / "tables").iterdir()} == committed


def test_table1_paired_interval_carries_the_seed_noise():
    "With several seeds, Table 1's paired interval is the two-level bootstrap (seeds and examples), wider than the examples-only one."
    from genome_nb.analysis import paired_bootstrap, with_best_rows
    from genome_nb.reports import experiment_results
    df = experiment_results(ROOT / "results", "cpu", "single_task")
    d = with_best_rows(df[df.task == "csqa"])
    two = paired_bootstrap(d, "genome_plus", "best_single", "csqa", n_boot=2000, n_perm=200, resample="seeds+examples")
    one = paired_bootstrap(d, "genome_plus", "best_single", "csqa", n_boot=2000, n_perm=200)
    assert two["seeds_a"] == 5 and two["ci_high"] - two["ci_low"] > 1.5 * (one["ci_high"] - one["ci_low"])
    text = (ROOT / "results" / "cpu" / "tables" / "single_task_paired.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("| csqa | Best Single |"))
    assert f"| {two['ci_low']:.3f} | {two['ci_high']:.3f} |" in line, line


def test_racing_plan_arms_settings_and_bad_input():
    from genome_nb.experiments import RACING
    from genome_nb.fitness import RACE_BOUNDS
    assert RACING == ("off", *RACE_BOUNDS)   # the experiment's arms are every mode GenomeConfig.racing accepts
    plan = plan_experiment("racing", "cpu")
    assert [(s.method, s.config["racing"], s.private_cache) for s in plan.specs[:3]] == [
        ("genome_plus", "off", True), ("genome_plus", "exact", True), ("genome_plus", "hoeffding", True)]
    assert len(plan.specs) == 3 * 5 and {s.seed for s in plan.specs} == {41, 42, 47, 53, 3407}
    k10 = plan_experiment("racing", "cpu", config={"iterations": 10}, variants=("off", "hoeffding"), seeds=(41,))
    assert [s.variant for s in k10.specs] == ["racing=off iterations=10", "racing=hoeffding iterations=10"]
    assert all(s.config["iterations"] == 10 for s in k10.specs)
    assert not {str(plan.run_dir(s, "r")) for s in plan.specs} & {str(k10.run_dir(s, "r")) for s in k10.specs}
    with pytest.raises(ValueError, match="unknown variant"): plan_experiment("racing", "cpu", variants=("fast",))
    with pytest.raises(ValueError, match="through `variants`"): plan_experiment("racing", "cpu", config={"racing": "exact"})


def test_fidelity_plan_shares_table1_runs_and_refuses_unknown_baselines():
    plan, single = plan_experiment("fidelity", "cpu"), plan_experiment("single_task", "cpu")
    after = [s for s in plan.specs if s.experiment == "single_task"]
    assert len(after) == len(plan.specs) / 2 == 15                    # three baselines × five seeds, each arm
    assert {str(plan.run_dir(s, "r")) for s in after} <= {str(single.run_dir(s, "r")) for s in single.specs}   # Table 1's own runs
    assert {s.method for s in plan.specs} == {"dare_ties", "merge3", "lorahub"}   # QASC is scored by choice: no Pack of LLMs arm
    assert {s.variant for s in plan.specs if s.experiment is None} == {"f1_before:space=lora", "f1_before:objective=accuracy"}
    smoke = plan_experiment("fidelity", "smoke", tasks=("toy", "toy_number"))   # Pack of LLMs' before arm only where a task generates
    assert {(s.method, s.tasks) for s in smoke.specs if s.method == "pack_of_llms"} == {("pack_of_llms", ("toy_number",))}
    assert {s.tasks for s in plan_experiment("fidelity", "smoke").specs} <= {s.tasks for s in plan_experiment("single_task", "smoke").specs}
    with pytest.raises(ValueError, match="no before-fix option"): plan_experiment("fidelity", "cpu", methods=("genome",))
