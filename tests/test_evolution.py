"GENOME / GENOME+ end to end on the tiny random Llama: resume after kill -9, ablation switches, test split at the end."
import copy, json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from genome_nb.engines import HFEngine
from genome_nb.evolution import GenomeConfig, evolve
from genome_nb.fitness import Evaluator
from genome_nb.genome import LoraSpec, genome_from_model, random_lora_model
from genome_nb.models import load_base
from genome_nb.tasks import make_toy_task
from conftest import SpyTask, history

ROOT = Path(__file__).resolve().parents[1]

SETUP = textwrap.dedent('''
    import copy
    from genome_nb.engines import HFEngine
    from genome_nb.evolution import GenomeConfig, evolve
    from genome_nb.fitness import Evaluator
    from genome_nb.genome import LoraSpec, genome_from_model, random_lora_model
    from genome_nb.models import load_base
    from genome_nb.tasks import make_toy_task
    base, tok = load_base("tiny-random", dtype="fp32")
    spec = LoraSpec(base_model="tiny-random", r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
    experts = {f"e{s}": genome_from_model(random_lora_model(copy.deepcopy(base), spec, seed=s, scale=0.5)) for s in range(4)}
    task = make_toy_task(n=8, seed=0)
    engine = HFEngine(base, tok)
    def run(run_dir, **kw):
        cfg = GenomeConfig(**{**dict(population_size=4, iterations=4, top_k=2, seed=11), **kw})
        return evolve(experts, [task], cfg, Evaluator(engine, run_dir=run_dir), run_dir, progress=False)
''')
ns: dict = {}
exec(SETUP, ns)


def test_resume_after_kill_gives_identical_results(tmp_path):
    "kill -9 twice, each time just after a generation was checkpointed (so inside the next one), then resume."
    reference = ns["run"](tmp_path / "uninterrupted", iterations=8)
    killed = tmp_path / "killed"
    script = SETUP + f"\nrun({str(killed)!r}, iterations=8)\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for lines in (2, 5):
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (
                (killed / "history.jsonl").is_file() and len(history(killed)) >= lines):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL); proc.wait()
        assert not (killed / "final.json").is_file(), "the run finished before it could be killed"
        assert len(history(killed)) < 9
    resumed = ns["run"](killed, iterations=8)
    assert resumed == reference
    assert (killed / "final.json").read_text() == (tmp_path / "uninterrupted" / "final.json").read_text()
    assert [h["global_best"] for h in history(killed)] == [h["global_best"] for h in history(tmp_path / "uninterrupted")]


@pytest.mark.parametrize("switch, check", [
    (dict(use_crossover=False), lambda h, f: all(g["ops"]["crossover"] == 0 for g in h[1:])),
    (dict(use_mutation=False), lambda h, f: all(g["ops"]["mutation"] == 0 for g in h[1:])),
    (dict(use_crossover=False, use_mutation=False), lambda h, f: all(g["ops"]["crossover"] + g["ops"]["mutation"] == 0 for g in h[1:])),
    (dict(method="genome"), lambda h, f: all(g["ops"]["succession"] == 0 for g in h[1:]) and "ensemble" not in f),
    (dict(method="genome_plus"), lambda h, f: all(g["ops"]["succession"] == 4 for g in h[1:]) and len(f["ensemble"]["members"]) == 2),
    (dict(use_succession=False), lambda h, f: all(g["ops"]["succession"] == 0 for g in h[1:]) and "ensemble" in f),
    (dict(use_ensemble=False), lambda h, f: "ensemble" not in f and any(g["ops"]["succession"] for g in h[1:])),
    (dict(use_initialization=False), lambda h, f: h[0]["ops"] == {"init": 0, "expert": 4}),
    (dict(), lambda h, f: h[0]["ops"] == {"init": 4, "expert": 0}),
])
def test_ablation_switches_do_what_they_say(tmp_path, switch, check):
    final = ns["run"](tmp_path, iterations=2, **switch)
    assert check(history(tmp_path), final)


@pytest.mark.parametrize("scheme", ["proportional", "tournament", "random"])
def test_selection_scheme_reaches_the_operator(tmp_path, monkeypatch, scheme):
    import genome_nb.evolution as evo
    seen, real = [], evo.select
    def spy(*a, **kw):
        seen.append(kw["scheme"]); return real(*a, **kw)
    monkeypatch.setattr(evo, "select", spy)
    ns["run"](tmp_path, iterations=2, selection=scheme)
    assert seen == [scheme, scheme]


def test_test_split_is_read_only_at_the_end(tmp_path):
    log = []
    spy = SpyTask(ns["task"], log, tmp_path)
    cfg = GenomeConfig(population_size=4, iterations=3, top_k=2, seed=5)
    evolve(ns["experts"], [spy], cfg, Evaluator(ns["engine"], run_dir=tmp_path), tmp_path, progress=False)
    test_reads = [done for split, done in log if split == "test"]
    assert test_reads, "the test split was never scored"
    assert all(done == cfg.iterations + 1 for done in test_reads), log   # only after the last generation was recorded
    first_test = next(i for i, (s, _) in enumerate(log) if s == "test")
    assert all(s == "validation" for s, _ in log[:first_test])
