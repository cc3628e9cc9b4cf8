"Analysis on synthetic run directories: loading, paper tables, Tables 9–10 statistics, paired tests, figures."
import json, random, shutil, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from genome_nb.analysis import find_run_dirs, load_predictions, load_results, paired_bootstrap, paired_table, table
from genome_nb.hparams import CONVENTIONAL_STARS, PAPER_STARS, hparam_stats, stars
from genome_nb.plots import capability_ranks, load_history, plot_capability_heatmap, plot_fitness_curves, plot_hparam, plot_scaling
from genome_nb.synthetic import synthetic_runs, synthetic_sweep, write_synthetic_run

METHODS = ("best_single", "model_swarms", "genome", "genome_plus")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    synthetic_runs(root, methods=METHODS, tasks=("arc_c", "flores37"), seeds=(41, 42, 47), incomplete=2)
    return root


@pytest.fixture(scope="module")
def res(runs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_results(runs)


# ---------------------------------------------------------------- load_results

def test_load_results_one_row_per_run_and_task(runs, res):
    assert len(res) == len(METHODS) * 2 * 3
    assert set(res.method) == set(METHODS) and set(res.seed) == {41, 42, 47}
    assert res.groupby(["method", "task", "seed"]).size().eq(1).all()
    assert set(res.profile) == {"synthetic"} and set(res.experiment) == {"single_task"}
    # the reported score: GENOME+ reports its ensemble, everyone else the best individual
    gp = res[res.method == "genome_plus"]
    assert gp.test_ensemble.notna().all() and (gp.reported == gp.test_ensemble).all() and set(gp.reported_from) == {"ensemble"}
    other = res[res.method != "genome_plus"]
    assert other.test_ensemble.isna().all() and (other.reported == other.test_best).all()
    # scales and hyperparameters
    assert dict(zip(res.task, res.scale)) == {"arc_c": 100.0, "flores37": 1.0}
    g = res[res.method == "genome"].iloc[0]
    assert (g.cr, g.imr, g.gmr, g.N, g.sigma) == (0.3, 0.3, 0.2, 10.0, 0.001)
    # wall time: history seconds summed, budget seconds kept apart
    d = Path(g.run_dir)
    hist = [json.loads(l) for l in (d / "history.jsonl").read_text().splitlines()]
    assert g.opt_seconds == pytest.approx(sum(h["seconds"] for h in hist))
    assert g.eval_seconds == json.loads((d / "budget.json").read_text())["evaluator"]["seconds"]
    assert g.evaluations == json.loads((d / "final.json").read_text())["evaluations"]


def test_test_score_matches_predictions(res):
    pred = load_predictions(res)
    mean = pred.groupby("run_dir").score.mean()
    for _, r in res.iterrows():
        assert mean[r.run_dir] == pytest.approx(r.reported)


def test_incomplete_runs_are_skipped_and_counted(runs):
    with pytest.warns(UserWarning, match="skipped 2 unfinished"):
        df = load_results(runs)
    assert len(df.attrs["incomplete"]) == 2 and all("unfinished" in p for p in df.attrs["incomplete"])


def test_pattern_selects_runs(runs):
    df = load_results(runs, pattern="*/genome_plus_*")
    assert set(df.method) == {"genome_plus"} and len(df) == 6
    with pytest.raises(FileNotFoundError, match="matches 'nothing\\*'"):
        load_results(runs, pattern="nothing*")


def test_nested_directories_are_not_runs(tmp_path):
    d = write_synthetic_run(tmp_path / "p" / "e" / "r", "genome", "arc_c", 1, 0.5)
    (d / "adapters" / "best").mkdir(parents=True)
    (d / "adapters" / "best" / "config.json").write_text("{}")
    assert find_run_dirs(tmp_path) == [d]


def test_bad_files_are_named(tmp_path):
    d = write_synthetic_run(tmp_path / "r", "genome", "arc_c", 1, 0.5)
    (d / "final.json").write_text('{"method": "genome",')
    with pytest.raises(ValueError, match=r"r/final.json: malformed JSON \(line 1"):
        load_results(tmp_path)
    for mutate, msg in [(lambda f: f.pop("seed"), "missing field 'seed'"),
                        (lambda f: f["best"]["test"].pop("arc_c"), "missing field 'best.test.arc_c'"),
                        (lambda f: f["best"]["test"].update(arc_c="0.5"), "'best.test.arc_c' = '0.5' is not of type"),
                        (lambda f: f.update(tasks=[]), "field 'tasks' is empty")]:
        write_synthetic_run(d, "genome", "arc_c", 1, 0.5)
        f = json.loads((d / "final.json").read_text()); mutate(f)
        (d / "final.json").write_text(json.dumps(f))
        with pytest.raises(ValueError, match=msg):
            load_results(tmp_path)
    write_synthetic_run(d, "genome", "arc_c", 1, 0.5)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json beside it"):
        load_results(tmp_path)


def test_metric_comes_from_final_json_or_argument(tmp_path):
    write_synthetic_run(tmp_path / "r", "genome", "toy_task", 1, 0.5, with_metrics=False)
    with pytest.raises(ValueError, match="no metric known for task 'toy_task'"):
        load_results(tmp_path)
    assert load_results(tmp_path, metrics={"toy_task": "bleu"}).scale.tolist() == [1.0]
    with pytest.raises(ValueError, match="unknown to METRIC_SCALE"):
        load_results(tmp_path, metrics={"toy_task": "rouge"})


# ---------------------------------------------------------------- table

PAPER_T1 = {  # Table 1, MMLU / MMLUPro / DROP columns (already in points)
    "best_single": (52.90, 26.57, 30.40), "model_swarms": (55.91, 27.77, 34.52),
    "genome": (56.66, 27.77, 35.28), "genome_plus": (56.44, 30.98, 47.06)}


def paper_frame():
    return pd.DataFrame([dict(method=m, task=t, reported=v, seed=41) for m, vs in PAPER_T1.items()
                         for t, v in zip(("mmlu", "mmlu_pro", "drop"), vs)])


def test_table_reproduces_the_papers_relative_gains():
    t = table(paper_frame(), points=False)
    md = t.markdown.splitlines()
    assert md[0] == "| Method | MMLU | MMLUPro | DROP |"
    labels = [l.split(" | ")[0][2:] for l in md[2:]]
    assert labels == ["Best Single", "Model Swarms", "GENOME", "- vs Best Single", "- vs Model Swarms",
                      "GENOME+", "- vs Best Single", "- vs Model Swarms"]
    # Table 1: GENOME +7.11% / +4.52% / +16.05% vs Best Single; +1.34% / — / +2.20% vs Model Swarms
    assert md[5] == "| - vs Best Single | +7.11% | +4.52% | +16.05% |"
    assert md[6] == "| - vs Model Swarms | +1.34% | — | +2.20% |"
    assert md[8] == "| - vs Best Single | +6.69% | +16.60% | +54.80% |"
    assert md[9] == "| - vs Model Swarms | +0.95% | +11.56% | +36.33% |"
    # bold best, underline second; GENOME and Model Swarms tie at 27.77 → second place for both
    assert md[4] == "| GENOME | **56.66** | <u>27.77</u> | <u>35.28</u> |"
    assert md[3] == "| Model Swarms | 55.91 | <u>27.77</u> | 34.52 |"
    assert md[7] == "| GENOME+ | <u>56.44</u> | **30.98** | **47.06** |"
    assert t.gains.loc[("genome_plus", "best_single"), "drop"] == pytest.approx(54.80, abs=0.005)


def test_tied_best_leaves_no_second():
    df = pd.DataFrame([dict(method=m, task="mmlu", reported=v, seed=1) for m, v in
                       (("best_single", 10.0), ("genome", 12.0), ("genome_plus", 12.0))])
    md = table(df, points=False).markdown
    assert "| GENOME | **12.00** |" in md and "| GENOME+ | **12.00** |" in md and "| Best Single | 10.00 |" in md


def test_table_mean_std_and_points(res):
    t = table(res)
    sub = res[(res.method == "genome") & (res.task == "arc_c")].test_best * 100
    assert t.mean.at["genome", "arc_c"] == pytest.approx(sub.mean())
    assert t.std.at["genome", "arc_c"] == pytest.approx(sub.std(ddof=1))
    assert t.n.at["genome", "arc_c"] == 3
    assert f"{sub.mean():.2f} ± {sub.std(ddof=1):.2f}" in t.markdown
    assert list(t.mean.columns) == ["flores37", "arc_c"]  # the paper's column order
    assert " ± " not in table(res, std=False).markdown


def test_table_is_deterministic(res):
    shuffled = res.sample(frac=1.0, random_state=np.random.RandomState(3)).reset_index(drop=True)
    a, b = table(res), table(shuffled)
    assert a.markdown == b.markdown and a.latex == b.latex


def test_table_latex():
    tex = table(paper_frame(), points=False, color_gains=True).latex
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{lrrr}" and lines[-1] == r"\end{tabular}"
    assert r"GENOME & \textbf{56.66} & \underline{27.77} & \underline{35.28} \\" in lines
    assert r"- vs Model Swarms & \textcolor{red}{+1.34\%} & --- & \textcolor{red}{+2.20\%} \\" in lines
    df = paper_frame().assign(method=lambda d: d.method.replace("best_single", "merge3"))
    assert r"MERGE$^3$-LoRA" in table(df, points=False).latex


def test_table_rejects_mixed_experiments(res):
    twice = pd.concat([res, res])
    with pytest.raises(ValueError, match="occurs 2 times"):
        table(twice)
    with pytest.raises(ValueError, match="no column"):
        table(res, rows="nope")


def test_table_other_layouts():
    # Tables 13–15: methods × validation size
    df = pd.DataFrame([dict(method=m, n_val=n, seed=s, test_best=0.3 + 0.01 * s + (0.05 if m == "genome_plus" else 0), scale=100.0)
                       for m in ("genome", "genome_plus") for n in (200, 20, 50) for s in (1, 2)])
    t = table(df, value="test_best", cols="n_val", gains_vs=(), col_labels={20: "N=20", 50: "N=50", 200: "N=200"})
    assert t.markdown.splitlines()[0] == "| Method | N=20 | N=50 | N=200 |"
    assert "| GENOME+ | **36.50 ± 0.71** |" in t.markdown


# ---------------------------------------------------------------- hparam_stats

def grid_frame(n=500, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.choice(np.arange(1, 11) / 10, size=(n, 3)), columns=["cr", "imr", "gmr"])
    df["y"] = 1 + 2 * df.cr - 3 * df.imr + 0 * df.gmr + rng.normal(0, 0.05, n)
    return df


def test_ols_recovers_known_coefficients():
    df = grid_frame()
    hs = hparam_stats(df, y={"y": "y"})
    reg = hs.regression.set_index("variable")
    assert reg.coef.tolist() == pytest.approx([1, 2, -3, 0], abs=0.03)
    for v, beta in zip(reg.index, [1, 2, -3, 0]):  # truth within 4 standard errors
        assert abs(reg.at[v, "coef"] - beta) < 4 * reg.at[v, "se"]
    assert reg.at["Cross Rate", "p"] < 1e-10 and reg.at["Cross Rate", "stars"] == "***"
    assert reg.at["Gene Mutation Rate", "p"] > 0.01
    assert hs.fits.r2.iloc[0] > 0.99 and hs.fits.n.iloc[0] == 500
    # the same numbers as numpy's least squares
    X = np.column_stack([np.ones(len(df)), df[["cr", "imr", "gmr"]]])
    assert reg.coef.to_numpy() == pytest.approx(np.linalg.lstsq(X, df.y.to_numpy(), rcond=None)[0])


def test_correlations_known_values():
    df = grid_frame()
    df["mono"] = np.exp(6 * df.cr)           # monotone, non-linear: Spearman 1, Pearson < 1
    df["neg"] = -df.imr                      # exactly linear: Pearson −1
    hs = hparam_stats(df, y={"mono": "mono", "neg": "neg"})
    c = hs.correlations.set_index(["hyperparameter", "metric"])
    assert c.at[("cr", "mono"), "spearman_rho"] == pytest.approx(1.0)
    assert 0.8 < c.at[("cr", "mono"), "pearson_r"] < 0.99
    assert c.at[("imr", "neg"), "pearson_r"] == pytest.approx(-1.0)
    # y = 2cr − 3imr with independent uniform rates: corr(y, cr) = 2/√13 ≈ 0.555
    hs2 = hparam_stats(df.assign(y=2 * df.cr - 3 * df.imr), y={"y": "y"})
    r = hs2.correlations.set_index("hyperparameter").at["cr", "pearson_r"]
    assert abs(r - 2 / np.sqrt(13)) < 0.06
    ref = stats.pearsonr(df.cr, df.mono)
    assert c.at[("cr", "mono"), "pearson_p"] == pytest.approx(ref.pvalue)


def test_stars_follow_the_papers_notes():
    assert [stars(p) for p in (0.009, 0.049, 0.099, 0.1, 0.5)] == ["***", "**", "*", "", ""]
    assert [stars(p, CONVENTIONAL_STARS) for p in (0.0009, 0.009, 0.049, 0.06)] == ["***", "**", "*", ""]
    assert PAPER_STARS == ((0.01, "***"), (0.05, "**"), (0.1, "*"))


def test_hparam_stats_on_sweep_run_directories(tmp_path):
    synthetic_sweep(tmp_path, n_runs=80, seed=1)
    df = load_results(tmp_path)
    hs = hparam_stats(df)
    assert list(hs.fits.panel) == ["Panel A: Test", "Panel B: Ensemble", "Panel C: Time"]
    time = hs.regression[hs.regression.panel == "Panel C: Time"].set_index("variable")
    assert time.at["Individual Mutation Rate", "coef"] == pytest.approx(3100, rel=0.1)
    assert time.at["Cross Rate", "coef"] == pytest.approx(1700, rel=0.15)
    md = hs.corr_markdown.splitlines()
    assert md[0] == "| HyperParameter | Metric | Pearson r | p-value | Spearman ρ | p-value |"
    assert md[2].startswith("| Cross Rate | Test | ") and md[3].startswith("|  | Ensemble | ")
    assert "Notes: *** p < 0.01, ** p < 0.05, * p < 0.1" in hs.corr_markdown
    assert r"\multicolumn{5}{l}{Panel A: Test (N = 80, R$^2$ = " in hs.reg_latex
    assert hparam_stats(df).reg_markdown == hs.reg_markdown


def test_hparam_stats_errors(tmp_path):
    df = grid_frame(50)
    with pytest.raises(ValueError, match="'gmr' is constant"):
        hparam_stats(df.assign(gmr=0.2), y={"y": "y"})
    with pytest.raises(ValueError, match="column 'y' is missing or not finite in 1 run"):
        hparam_stats(df.assign(y=df.y.where(df.index != 3)), y={"y": "y"})
    with pytest.raises(ValueError, match="several rows per run"):
        hparam_stats(pd.concat([df, df]).assign(run_dir=list(range(50)) * 2, task=["a"] * 50 + ["b"] * 50), y={"y": "y"})


# ---------------------------------------------------------------- paired bootstrap

def probit_predictions(levels, seeds=(1, 2, 3), n=1000, seed=1):
    "Example i right when u_i + ε < p; expected accuracy ∫ Φ((p − u)/0.3) du."
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    return pd.DataFrame([dict(method=m, seed=s, task="t", id=f"x{i:04d}", score=float(u[i] + rng.normal(0, 0.3) < p))
                         for m, p in levels.items() for s in seeds for i in range(n)])


def test_paired_bootstrap_finds_a_known_gap():
    pred = probit_predictions({"A": 0.6, "C": 0.45})
    truth = integrate.quad(lambda u: stats.norm.cdf((0.6 - u) / 0.3) - stats.norm.cdf((0.45 - u) / 0.3), 0, 1)[0]
    ex = paired_bootstrap(pred, "A", "C", "t", n_boot=2000, n_perm=2000)
    two = paired_bootstrap(pred, "A", "C", "t", n_boot=2000, n_perm=2000, resample="seeds+examples")
    for r in (ex, two):
        assert r["ci_low"] > 0.05 and max(r["p_bootstrap"], r["p_wilcoxon"], r["p_permutation"]) < 0.001
        assert r["diff"] == pytest.approx(r["mean_a"] - r["mean_b"])
    assert two["ci_low"] < truth < two["ci_high"]
    assert two["ci_high"] - two["ci_low"] > ex["ci_high"] - ex["ci_low"]  # seeds add variance
    assert (ex["n_examples"], ex["seeds_a"], ex["seeds_b"]) == (1000, 3, 3)


def test_paired_bootstrap_is_calibrated_under_the_null():
    "Two methods with the same level: each 95 % interval / 5 % test rejects in about 5 % of 40 datasets."
    rejected = dict(ci=0, ci2=0, p_bootstrap=0, p_wilcoxon=0, p_permutation=0)
    for k in range(40):
        pred = probit_predictions({"A": 0.6, "B": 0.6}, n=200, seed=100 + k)
        r = paired_bootstrap(pred, "A", "B", "t", n_boot=400, n_perm=400, seed=k)
        r2 = paired_bootstrap(pred, "A", "B", "t", n_boot=400, n_perm=400, seed=k, resample="seeds+examples")
        rejected["ci"] += not r["ci_low"] < 0 < r["ci_high"]
        rejected["ci2"] += not r2["ci_low"] < 0 < r2["ci_high"]
        for p in ("p_bootstrap", "p_wilcoxon", "p_permutation"): rejected[p] += r[p] < 0.05
    assert max(rejected.values()) <= 5, rejected  # P(≥ 6 of 40 | 5 %) ≈ 0.05; deterministic here (seeded)


def test_paired_bootstrap_identical_runs():
    pred = probit_predictions({"A": 0.6}, n=200)
    same = pred[pred.method == "A"]
    r0 = paired_bootstrap(pd.concat([same, same.assign(method="A2")]), "A", "A2", "t", n_boot=500)
    assert r0["diff"] == 0 and r0["p_bootstrap"] == r0["p_wilcoxon"] == r0["p_permutation"] == 1.0


def test_paired_bootstrap_is_seeded():
    pred = probit_predictions({"A": 0.6, "C": 0.5}, n=300)
    a = paired_bootstrap(pred, "A", "C", "t", n_boot=1000, n_perm=1000, seed=5, resample="seeds+examples")
    b = paired_bootstrap(pred.sample(frac=1.0, random_state=np.random.RandomState(0)), "A", "C", "t", n_boot=1000,
                         n_perm=1000, seed=5, resample="seeds+examples")
    assert a == b


def test_paired_bootstrap_checks_pairing():
    pred = probit_predictions({"A": 0.6, "B": 0.5}, n=50)
    with pytest.raises(ValueError, match="different test examples"):
        paired_bootstrap(pred[~((pred.method == "B") & (pred.id == "x0003"))], "A", "B", "t", n_boot=100)
    with pytest.raises(ValueError, match="seed 2 on 't' lacks 1 test examples"):
        paired_bootstrap(pred[~((pred.method == "B") & (pred.id == "x0003") & (pred.seed == 2))], "A", "B", "t", n_boot=100)
    with pytest.raises(ValueError, match="no per-example scores for method 'Z'"):
        paired_bootstrap(pred, "A", "Z", "t", n_boot=100)
    with pytest.raises(ValueError, match="twice"):
        paired_bootstrap(pd.concat([pred, pred]), "A", "B", "t", n_boot=100)


def test_paired_table_on_run_directories(res):
    pt = paired_table(res, n_boot=500, n_perm=500)
    assert list(zip(pt.task, pt.b)) == [(t, m) for t in ("flores37", "arc_c") for m in ("best_single", "model_swarms", "genome")]
    assert (pt.a == "genome_plus").all() and (pt.p_holm >= pt.p_permutation).all()
    # GENOME+ is compared through its ensemble's per-example scores
    pred = load_predictions(res, ["genome_plus"], ["arc_c"])
    assert (pred.score == pred.ensemble_score).all()
    row = pt[(pt.task == "arc_c") & (pt.b == "best_single")].iloc[0]
    t = res[res.task == "arc_c"].groupby("method").reported.mean()
    assert row["diff"] == pytest.approx(t["genome_plus"] - t["best_single"])


# ---------------------------------------------------------------- figures

def test_figures_are_written_and_deterministic(tmp_path, res):
    scal = load_results(synthetic_runs(tmp_path / "s", methods=("model_swarms", "genome_plus"), tasks=("arc_c",),
                                       seeds=(1, 2), population_sizes=(10, 20, 40))[0].parents[2])
    sweep = load_results(synthetic_sweep(tmp_path / "w", n_runs=30)[0].parents[2])
    caps = pd.DataFrame([dict(expert=f"e{i}", task=t, score=float((i * 7 + j * 3) % 10)) for i in range(4)
                         for j, t in enumerate(("mmlu", "gsm8k", "meld"))])
    caps.to_csv(tmp_path / "caps.csv", index=False)
    makers = {"fit.png": lambda p: plot_fitness_curves(res, p), "fit_dirs.png": lambda p: plot_fitness_curves(sorted(set(res.run_dir)), p),
              "scaling.png": lambda p: plot_scaling(scal, p), "caps.png": lambda p: plot_capability_heatmap(tmp_path / "caps.csv", p),
              "hparam.png": lambda p: plot_hparam(sweep, p), "scaling.pdf": lambda p: plot_scaling(scal, p),
              "hparam.svg": lambda p: plot_hparam(sweep, p)}
    for name, make in makers.items():
        make(tmp_path / "a" / name); make(tmp_path / "b" / name)
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b, f"{name} differs between two writes"
        assert 1_000 < len(a) < 400_000
    assert (tmp_path / "a" / "fit.png").read_bytes() == (tmp_path / "a" / "fit_dirs.png").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a" / "scaling.pdf").read_bytes()
    assert b"Software" not in (tmp_path / "a" / "caps.png").read_bytes()
    with pytest.raises(ValueError, match="unsupported figure format '.jpg'"):
        plot_scaling(scal, tmp_path / "x.jpg")


def test_capability_ranks():
    caps = pd.DataFrame({"expert": ["a", "b", "c"], "meld": [0.5, 0.7, 0.7], "mmlu": [0.3, 0.2, 0.1]})
    r = capability_ranks(caps)
    assert list(r.columns) == ["mmlu", "meld"]  # Table 7's category order: knowledge before affective
    assert r.to_dict() == {"mmlu": {"a": 1, "b": 2, "c": 3}, "meld": {"a": 3, "b": 1, "c": 1}}
    long = caps.melt(id_vars="expert", var_name="task", value_name="score")
    assert capability_ranks(long).equals(r)
    with pytest.raises(ValueError, match="need columns"):
        capability_ranks(pd.DataFrame({"x": [1]}))


def test_history_of_unfinished_runs(runs):
    h = load_history(runs)
    assert set(h.method) == set(METHODS)
    assert len(h[h.run_dir.str.contains("unfinished")]) == 2 * 4  # two runs, generations 0..3
    assert (h.groupby("run_dir").generation.max() == 3).all()
