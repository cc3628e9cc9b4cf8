"The seven baselines and Best Single on the tiny random Llama: validation only, test at the end, deterministic, same files as evolve."
import copy, json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from genome_nb.lorahub import LoraHubConfig, lorahub_objective
from genome_nb.merge3 import AnchorTask, Merge3Config, fit_irt, irt_estimate, select_anchors
from genome_nb.pack import PackLLMConfig, pack_weights, _prompts
from genome_nb.registry import BASELINES, BASELINE_CONFIGS, baseline_config, run_baseline
from genome_nb.swarms import ModelSwarmsConfig
from genome_nb.engines import HFEngine
from genome_nb.fitness import Evaluator
from genome_nb.genome import LoraSpec, genome_from_model, random_lora_model
from genome_nb.models import load_base
from genome_nb.tasks import make_toy_task
from conftest import SpyTask, history

base, tok = load_base("tiny-random", dtype="fp32")
spec = LoraSpec(base_model="tiny-random", r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
experts = {f"e{s}": genome_from_model(random_lora_model(copy.deepcopy(base), spec, seed=s, scale=0.5)) for s in range(3)}
adapter = genome_from_model(random_lora_model(copy.deepcopy(base), spec, seed=99, scale=0.5))
task = make_toy_task(n=6, seed=0)
engine = HFEngine(base, tok)
SMALL = dict(lorahub=dict(budget=3), merge3=dict(population=2, generations=2, n_anchors=2),
             model_swarms=dict(iterations=2, restart_patience=1))


def run(method, run_dir, tasks=None, **kw):
    extra = dict(adapter=adapter) if method == "data_merge" else {}
    cfg = {**SMALL.get(method, {}), **kw}
    return run_baseline(method, experts, tasks or [task], cfg, Evaluator(engine, run_dir=run_dir), run_dir,
                        progress=False, **extra)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_method_spends_validation_only_and_repeats_for_its_seed(tmp_path, method):
    log = []
    spied = run(method, tmp_path / "a", tasks=[SpyTask(task, log, tmp_path / "a")])
    assert [s for s, _ in log][:1] == ["validation"]
    first_test = next(i for i, (s, _) in enumerate(log) if s == "test")
    assert all(s == "validation" for s, _ in log[:first_test]), log
    n_lines = len(history(tmp_path / "a"))
    assert all(done == n_lines for s, done in log if s == "test"), log   # test read only after the last history line
    assert 0.0 <= spied["best"]["test"]["toy"] <= 1.0 and set(spied["best"]) >= {"id", "digest", "origin", "fitness",
                                                                                   "validation", "test", "test_fitness"}
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"config.json", "history.jsonl", "final.json", "predictions_test.jsonl", "budget.json"} <= files
    assert "environment" in json.loads((tmp_path / "a" / "config.json").read_text())
    rows = [json.loads(l) for l in (tmp_path / "a" / "predictions_test.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"task", "id", "gold", "best", "best_score"} <= set(rows[0])
    again = run(method, tmp_path / "b")                                   # same seed, fresh directory and cache
    assert again == spied
    assert (tmp_path / "b" / "final.json").read_text() == (tmp_path / "a" / "final.json").read_text()


def test_finished_run_answers_and_other_config_is_refused(tmp_path):
    final = run("dare_ties", tmp_path)
    assert run("dare_ties", tmp_path) == final
    with pytest.raises(ValueError, match=r"config.density: 0.7 → 0.5"):
        run("dare_ties", tmp_path, density=0.5)


def test_another_seed_gives_another_merge(tmp_path):
    assert run("dare_ties", tmp_path / "a")["best"]["digest"] != run("dare_ties", tmp_path / "b", seed=1)["best"]["digest"]


def test_lorahub_objective_penalises_large_coefficients():
    # J = data term + 0.05·mean|w| is minimised (sail-sg/lorahub's get_score): larger coefficients cost more
    for loss in (0.0, 0.3, 1.0):
        js = [lorahub_objective(loss, [s, -s, s / 2], 0.05) for s in (0.0, 0.5, 1.0, 1.5)]
        assert all(a < b for a, b in zip(js, js[1:]))
    assert lorahub_objective(0.4, [0.0, 0.0], 0.05) == 0.4


def test_lorahub_searches_within_bounds_and_reports_its_choice(tmp_path):
    final = run("lorahub", tmp_path)
    h = history(tmp_path)
    assert len(h) == 3 and all(-1.5 <= w <= 1.5 for r in h for w in r["coefficients"])
    assert h[0]["coefficients"] == [0.0, 0.0, 0.0]                        # LoraHub starts from w = 0
    best = min(h, key=lambda r: r["objective_value"])                       # J is minimised
    assert final["objective_value"] == best["objective_value"] and list(final["coefficients"].values()) == best["coefficients"]


def test_pack_of_llms_weights_differ_between_prompts(tmp_path):
    ev = Evaluator(engine)
    _, prompts = _prompts(ev, task, "validation")
    lam = pack_weights(engine.prompt_logprobs(list(experts.values()), prompts), tau=1.0)
    np.testing.assert_allclose(lam.sum(1), 1.0)
    assert np.ptp(lam, axis=0).max() > 1e-4                               # not one weight vector for every prompt
    run("pack_of_llms", tmp_path)
    rows = [json.loads(l) for l in (tmp_path / "predictions_test.jsonl").read_text().splitlines()]
    assert len({tuple(r["weights"].values()) for r in rows}) > 1


def test_pack_of_llms_fuses_per_prompt_for_generate_tasks(tmp_path):
    gtask = make_toy_task(n=2, seed=0, kind="number", name="toynum")
    final = run_baseline("pack_of_llms", experts, [gtask], None, Evaluator(engine, n_val=2, n_test=2, run_dir=tmp_path),
                         tmp_path, progress=False)
    assert final["modes"] == {"toynum": "per_prompt_generate"} and "static_weights" not in final
    rows = [json.loads(l) for l in (tmp_path / "predictions_test.jsonl").read_text().splitlines()]
    assert len({tuple(r["weights"].values()) for r in rows}) == 2                     # each prompt its own weights
    assert final["generate_cost"]["test"]["toynum"] == dict(prompts=2, perplexity_passes=6, merges=2, generate_calls=2)
    assert not (tmp_path / "adapters").exists()


def test_pack_of_llms_static_mode_merges_once_for_generate_tasks(tmp_path):
    gtask = make_toy_task(n=2, seed=0, kind="number", name="toynum")
    final = run_baseline("pack_of_llms", experts, [gtask], dict(mode="static", top_k=2),
                         Evaluator(engine, n_val=1, n_test=1, run_dir=tmp_path), tmp_path, progress=False)
    assert final["modes"] == {"toynum": "static"} and len(final["static_weights"]) == 2
    assert (tmp_path / "adapters" / "best" / "adapter_config.json").is_file()


def test_model_swarms_personal_best_never_gets_worse(tmp_path):
    run("model_swarms", tmp_path, population_size=4)                     # one extra particle beyond the 3 experts
    h = history(tmp_path)
    assert len(h) == 3 and all(len(r["personal_best"]) == 4 for r in h)
    for a, b in zip(h, h[1:]):
        assert all(y >= x for x, y in zip(a["personal_best"], b["personal_best"]))
        assert b["global_best"] >= a["global_best"] and b["global_worst"] <= a["global_worst"]
        assert b["step_length"] == pytest.approx(max(a["step_length"] * 0.95, 0.1))
    assert all(pb >= f for r in h for pb, f in zip(r["personal_best"], r["fitness"]))


def test_merge3_estimates_on_anchors_and_reports_its_cost(tmp_path):
    final = run("merge3", tmp_path)
    c = final["cost"]
    assert c["examples_scored"] == 3 * 6 + 4 * 2 and c["full_set_examples"] == (3 + 4) * 6
    assert len(history(tmp_path)[0]["anchors"]["toy"]) == 2
    with pytest.raises(ValueError, match="anchors are validation examples"):
        AnchorTask(task, ["toy/validation/0"], "choice").examples("test")


def test_irt_estimate_is_exact_on_the_full_set_and_fits_abilities_in_order():
    rng = np.random.default_rng(1)
    a, b = np.exp(rng.normal(0, 0.5, 150)), rng.normal(0, 1.5, 150)
    thetas = np.linspace(-2, 2, 8)
    Y = np.stack([(rng.random(150) < expit(a * t - b)).astype(float) for t in thetas])
    irt = fit_irt(Y)
    assert np.corrcoef(irt.theta, thetas)[0, 1] > 0.95
    idx, w = select_anchors(irt, 150, rng)
    assert irt_estimate(irt, idx, w, Y[3], "gmpirt") == pytest.approx(Y[3].mean())
    idx, w = select_anchors(irt, 15, rng)
    assert len(set(idx.tolist())) == 15 and w.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must lie in"):
        fit_irt([[0.0, 2.0]])


@pytest.mark.parametrize("method", sorted(BASELINE_CONFIGS))
def test_configs_round_trip_through_json(method):
    cls = BASELINE_CONFIGS[method]
    assert cls.from_dict(json.loads(json.dumps(cls(seed=3).to_dict()))) == cls(seed=3)


@pytest.mark.parametrize("bad, match", [
    (lambda: LoraHubConfig(budget=0), "LoraHubConfig.budget=0"),
    (lambda: LoraHubConfig(optimizer="NoSuchOpt"), "nevergrad"),
    (lambda: Merge3Config(estimator="magic"), "Merge3Config.estimator"),
    (lambda: PackLLMConfig(tau=0), "PackLLMConfig.tau=0"),
    (lambda: ModelSwarmsConfig(starting_velocity="fast"), "starting_velocity"),
    (lambda: baseline_config("swarms"), "unknown baseline 'swarms'"),
    (lambda: baseline_config("merge3", {"anchors": 3}), "did you mean 'n_anchors'"),
])
def test_bad_configuration_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_data_merge_needs_its_adapter(tmp_path):
    with pytest.raises(ValueError, match="Data Merge adapter"):
        run_baseline("data_merge", experts, [task], None, Evaluator(engine, run_dir=tmp_path), tmp_path)


def test_model_swarms_refuses_fewer_particles_than_experts(tmp_path):
    with pytest.raises(ValueError, match="population_size=2 is smaller than the 3 experts"):
        run("model_swarms", tmp_path, population_size=2)


def test_unfinished_run_replays_through_its_score_cache(tmp_path):
    final = run("lorahub", tmp_path)
    (tmp_path / "final.json").unlink()                                    # as if killed before the end
    ev = Evaluator(engine, run_dir=tmp_path)
    again = run_baseline("lorahub", experts, [task], SMALL["lorahub"], ev, tmp_path, progress=False)
    assert again == final and ev.budget.evaluations == 0                  # nothing scored twice
