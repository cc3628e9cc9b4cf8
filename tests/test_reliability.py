"""Reliability: what a careless or hostile user can do to the package, and how it fails.

Each test is one case of issue #11 ([F9]): broken adapters, bad configuration, damaged data, runs that are
killed, run out of disk, collide or resume with another configuration, and reproducibility. A case passes
when the failure is *safe* (nothing half-written is left, earlier results stay loadable, no work is wasted
before a bad input is rejected) and *clear* (the message names the file, field or value).
"""
import copy, dataclasses, errno, json, math, os, random, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import genome_nb.data as data
import genome_nb.splits as splits
import genome_nb.evolution as evo
from genome_nb.registry import baseline_config, run_baseline
from genome_nb.cli import main
from genome_nb.profiles import load_profile
from genome_nb.engines import HFEngine
from genome_nb.ensemble import ensemble_predict
from genome_nb.evolution import GenomeConfig, Individual, evolve, load_checkpoint, save_checkpoint
from genome_nb.rundir import RunLock, run_environment
from genome_nb.fitness import Evaluator, ScoreCache, TaskScore
from genome_nb.genome import (CONFIG_NAME, WEIGHTS_NAME, LoraGenome, LoraSpec, genome_from_model, load_adapter,
                              random_lora_model, save_adapter, toy_genome)
from genome_nb.models import load_base
from genome_nb.tasks import get_task, make_toy_task

torch.set_num_threads(1)          # the tiny model is faster on one thread, and the CPU is shared
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
RAW = Path("/work/shared/data/raw")  # read only: every data case copies what it needs into tmp_path

base, tok = load_base("tiny-random", dtype="fp32")
SPEC = LoraSpec(base_model="tiny-random", r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
experts = {f"e{s}": genome_from_model(random_lora_model(copy.deepcopy(base), SPEC, seed=s, scale=0.5)) for s in range(3)}
task = make_toy_task(n=4, seed=0)
engine = HFEngine(base, tok)
SMALL = dict(population_size=3, iterations=2, top_k=2, seed=7)


def run(run_dir, experts=experts, **kw):
    cfg = GenomeConfig(**{**SMALL, **kw})
    return evolve(experts, [task], cfg, Evaluator(engine, run_dir=run_dir), run_dir, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "An uninterrupted run: what every interrupted or repeated run must reproduce."
    d = tmp_path_factory.mktemp("reference")
    run(d)
    return d


def strays(run_dir) -> list[str]:
    "Temporary files a writer left behind."
    return sorted(p.name for p in Path(run_dir).rglob("*") if ".tmp-" in p.name or ".tmp" in p.suffix)


def lines(path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def adapter(tmp_path):
    return save_adapter(experts["e0"], tmp_path / "good")


def variant(adapter, tmp_path, name, config=None, tensors=None, raw=None):
    "A copy of `adapter` with its config, tensors or raw safetensors bytes replaced."
    d = tmp_path / name
    shutil.copytree(adapter, d)
    if config is not None: (d / CONFIG_NAME).write_text(json.dumps(config))
    if tensors is not None: save_file(tensors, str(d / WEIGHTS_NAME))
    if raw is not None: (d / WEIGHTS_NAME).write_bytes(raw)
    return d


def test_missing_adapter_files_are_named(adapter, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(tmp_path / "nowhere")
    no_cfg = variant(adapter, tmp_path, "no_cfg"); (no_cfg / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"no_cfg/{CONFIG_NAME} is missing"):
        load_adapter(no_cfg)
    no_w = variant(adapter, tmp_path, "no_w"); (no_w / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"no_w/{WEIGHTS_NAME} is missing"):
        load_adapter(no_w)
    (no_w / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="only safetensors is read"):
        load_adapter(no_w)


@pytest.mark.parametrize("cut", [0, 7, 60, 0.5, -1], ids=["empty", "8-byte header cut", "json header cut", "half", "last byte"])
def test_truncated_safetensors_is_named(adapter, tmp_path, cut):
    blob = (adapter / WEIGHTS_NAME).read_bytes()
    n = int(len(blob) * cut) if isinstance(cut, float) else (len(blob) + cut if cut < 0 else cut)
    d = variant(adapter, tmp_path, "cut", raw=blob[:n])
    with pytest.raises(ValueError, match=f"cut/{WEIGHTS_NAME} is not a readable safetensors file"):
        load_adapter(d)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensors_are_refused_in_files_and_in_memory(adapter, tmp_path, value):
    g = experts["e0"]
    name = list(g)[2]
    bad = dict(g.items()) | {name: g[name].clone().index_fill_(0, torch.tensor([0]), value)}
    with pytest.raises(ValueError, match=f"{name}' contains \\d+ NaN/Inf"):
        load_adapter(variant(adapter, tmp_path, "nan", tensors=bad))
    # built in memory (from a model, a merge script, ...): refused too, instead of getting a score
    with pytest.raises(ValueError, match=f"{name}' contains \\d+ NaN/Inf"):
        LoraGenome(bad, SPEC)


def test_adapter_of_another_base_model_is_refused(adapter, tmp_path):
    with pytest.raises(ValueError, match="base_model_name_or_path is 'tiny-random', expected 'smollm2-135m-instruct'"):
        load_adapter(adapter, base_model="smollm2-135m-instruct")
    # same shapes, other base: the engine would apply it without complaint; the evaluator refuses it
    alien = LoraGenome(dict(experts["e0"].items()), dataclasses.replace(SPEC, base_model="smollm2-135m-instruct"))
    ev = Evaluator(engine)
    with pytest.raises(ValueError, match="adapter of base model 'smollm2-135m-instruct', but the engine runs 'tiny-random'"):
        ev.evaluate([experts["e1"], alien], [task])
    assert ev.budget.evaluations == 0                     # refused before anything was scored


def test_mixed_population_is_refused_before_any_work(tmp_path):
    r2 = genome_from_model(random_lora_model(copy.deepcopy(base), dataclasses.replace(SPEC, r=2, lora_alpha=4), seed=5))
    q_only = genome_from_model(random_lora_model(copy.deepcopy(base), dataclasses.replace(SPEC, target_modules=("q_proj",)), seed=6))
    for odd, match in ((r2, "genome 2 differs from genome 0 in r: 2 vs 4"),
                       (q_only, "genome 2 differs from genome 0 in target_modules")):
        mixed = {"e0": experts["e0"], "e1": experts["e1"], "odd": odd}
        with pytest.raises(ValueError, match=match):
            run(tmp_path / "evolve", experts=mixed)
        with pytest.raises(ValueError, match=match):
            run_baseline("expert_fusion", mixed, [task], None, Evaluator(engine), tmp_path / "fusion", progress=False)
    assert not (tmp_path / "evolve").exists() and not (tmp_path / "fusion").exists()   # nothing written


def test_adapter_config_that_lies_is_caught(adapter, tmp_path):
    cfg = json.loads((adapter / CONFIG_NAME).read_text())
    with pytest.raises(ValueError, match=r"rank 4, but the adapter config says r=8"):
        load_adapter(variant(adapter, tmp_path, "r8", config=cfg | {"r": 8}))
    with pytest.raises(ValueError, match=r"tensors adapt modules \['v_proj'\] not listed in target_modules"):
        load_adapter(variant(adapter, tmp_path, "targets", config=cfg | {"target_modules": ["q_proj"]}))
    with pytest.raises(ValueError, match=f"r_str/{CONFIG_NAME}: LoraSpec.r must be a positive integer, got '4'"):
        load_adapter(variant(adapter, tmp_path, "r_str", config=cfg | {"r": "4"}))
    with pytest.raises(ValueError, match=f"alpha/{CONFIG_NAME}: field 'lora_alpha' is missing"):
        load_adapter(variant(adapter, tmp_path, "alpha", config={k: v for k, v in cfg.items() if k != "lora_alpha"}))
    # a lora_B that is missing: found on load, not later inside the engine
    g = dict(experts["e0"].items())
    gone = next(k for k in g if "layers.1.self_attn.v_proj.lora_B" in k)
    with pytest.raises(ValueError, match=f"no_b/{WEIGHTS_NAME}: module 'model.layers.1.self_attn.v_proj' has lora_A but not both"):
        load_adapter(variant(adapter, tmp_path, "no_b", tensors={k: v for k, v in g.items() if k != gone}))
    # in-features that do not fit the base model: the pair is consistent, so the engine names the mismatch
    a = next(k for k in g if k.endswith("layers.0.self_attn.q_proj.lora_A.weight"))
    wide = load_adapter(variant(adapter, tmp_path, "wide", tensors=g | {a: torch.zeros(4, 7)}))
    with pytest.raises(ValueError, match=r"q_proj give ΔW of shape \(64, 7\), but the base weight is \(64, 64\)"):
        Evaluator(engine).evaluate([wide], [task])


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, field", [
    (dict(crossover_rate=1.5), "crossover_rate"), (dict(individual_mutation_rate=-0.1), "individual_mutation_rate"),
    (dict(gene_mutation_rate=float("nan")), "gene_mutation_rate"), (dict(population_size=1), "population_size"),
    (dict(population_size=4.0), "population_size"), (dict(top_k=11), "top_k"), (dict(top_k=0), "top_k"),
    (dict(sigma=-0.001), "sigma"), (dict(sigma=float("inf")), "sigma"), (dict(lam=float("nan")), "lam"),
    (dict(method="genome++"), "method"), (dict(selection="roulette"), "selection"), (dict(elite_ratio=1.0), "elite_ratio"),
    (dict(phi=(1, 1, 1)), "phi"), (dict(iterations=-1), "iterations"),
])
def test_genome_config_rejects_bad_values_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=f"GenomeConfig.{field}="):
        GenomeConfig(**kw)


@pytest.mark.parametrize("kw, field", [
    (dict(seed=-1), "seed"),                             # accepted, then make_generator fails after config.json is written
    (dict(seed=True), "seed"),
    (dict(merge_method="lineer"), "merge_method"),       # accepted, then merge() fails inside initialize
    (dict(phi=(float("nan"), 0.2, 0.2, 0.1)), "phi"),    # NaN passes min() < 0 and sum() <= 0
    (dict(experience_scale=float("nan")), "experience_scale"),
    (dict(elite_ratio="0.2"), "elite_ratio"),            # TypeError from a comparison, not a named ValueError
    (dict(iterations=True), "iterations"),
    (dict(use_crossover="no"), "use_crossover"),         # any non-empty string is true
])
def test_genome_config_gaps(kw, field):
    with pytest.raises(ValueError, match=f"GenomeConfig.{field}="):
        GenomeConfig(**kw)


def test_unknown_names_are_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown task 'arc-c'; valid names: .*arc_c"):
        get_task("arc-c")
    with pytest.raises(ValueError, match=r"unknown baseline 'lorahubb' \(did you mean 'lorahub'\?\)"):
        run_baseline("lorahubb", experts, [task], None, Evaluator(engine), "/nonexistent/never-created")
    assert not Path("/nonexistent/never-created").exists()
    with pytest.raises(ValueError, match=r"'crossover_rat' \(did you mean 'crossover_rate'\?\)"):
        GenomeConfig.from_dict({"crossover_rat": 0.5})
    with pytest.raises(ValueError, match=r"unknown profile 'cpu-smal'"):
        load_profile("cpu-smal")


@pytest.mark.parametrize("method, over, match", [
    ("lorahub", dict(budget=-1), "LoraHubConfig.budget=-1"),
    ("lorahub", dict(budget=float("nan")), "LoraHubConfig.budget=nan"),
    ("lorahub", dict(seed=-3), "LoraHubConfig.seed=-3"),                 # numpy's default_rng refuses it later
    ("dare_ties", dict(density=1.5), "DareTiesConfig.density=1.5"),
    ("merge3", dict(n_anchors=0), "Merge3Config.n_anchors=0"),
    ("pack_of_llms", dict(temperature=1.0), r"'temperature'"),
    ("model_swarms", dict(method="lorahub"), "configures method 'model_swarms', not 'lorahub'"),
])
def test_baseline_configs_reject_bad_values(method, over, match):
    with pytest.raises(ValueError, match=match):
        baseline_config(method, over)


def profile_file(tmp_path, **fields):
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(dict(name="mine", base="tiny-random", **fields)))
    return p


@pytest.mark.parametrize("fields, match", [
    (dict(taks=["toy"]), r"unknown field\(s\) 'taks' \(did you mean 'tasks'\?\)"),
    (dict(genome=dict(crossover_rat=0.3)), "'crossover_rat'"),
    (dict(genome=dict(top_k=11)), "GenomeConfig.top_k=11"),
    (dict(baselines=dict(lorahubb={})), "unknown baseline 'lorahubb'"),
    (dict(baselines=dict(lorahub=dict(budgett=3))), "'budgett'"),
])
def test_profile_typos_are_named_when_loaded(tmp_path, fields, match):
    with pytest.raises(ValueError, match=match):
        load_profile(profile_file(tmp_path, **fields))


@pytest.mark.parametrize("fields, match", [
    (dict(tasks=["arc-c"]), "arc-c"), (dict(engine="hff"), "engine"), (dict(mode="choise"), "mode"),
    (dict(n_val=-3), "n_val"), (dict(n_test="eight"), "n_test"), (dict(experts="random:x"), "experts"),
    (dict(seeds=[]), "seeds"), (dict(seeds=[-1]), "seeds"), (dict(dtype="fp33"), "dtype"), (dict(batch_tokens=0), "batch_tokens"),
])
def test_profile_values_are_checked_when_loaded(tmp_path, fields, match):
    with pytest.raises(ValueError, match=match):
        load_profile(profile_file(tmp_path, **fields))


def test_profile_with_non_utf8_bytes_is_named(tmp_path):
    p = tmp_path / "p.json"
    p.write_bytes(b'{"name": "caf\xe9", "base": "tiny-random"}')
    with pytest.raises(ValueError, match="p.json"):
        load_profile(p)


@pytest.fixture
def no_work(monkeypatch):
    "Building the engine is the first expensive step of a command: make it fail loudly if it is reached."
    import genome_nb.cli as cli, genome_nb.runs as runs
    def engine_built(profile): raise RuntimeError("work started: the engine was built before the inputs were checked")
    for m in (cli, runs): monkeypatch.setattr(m, "make_engine", engine_built)   # the commands' own and run_methods'


@pytest.mark.parametrize("argv, match", [
    (["evolve", "--set", '{"crossover_rat": 0.5}'], "crossover_rat"),
    (["evolve", "--set", '{"crossover_rate": 0.5'], "--set"),
    (["evolve", "--task", "arc-c"], "unknown task 'arc-c'"),
    (["baseline", "--method", "lorahubb"], "unknown baseline 'lorahubb'"),
])
def test_cli_rejects_bad_arguments_before_any_work(tmp_path, no_work, argv, match):
    with pytest.raises(ValueError, match=match):
        main(argv + ["--profile", "smoke", "--results", str(tmp_path)])


def test_evaluator_settings_are_checked():
    for kw, match in ((dict(mode="choise"), "mode='choise'"), (dict(mode={"toy": "gen"}), "mode="),
                      (dict(n_val=0), "n_val=0"), (dict(n_test=-1), "n_test=-1"), (dict(split_seed=-1), "split_seed=-1")):
        with pytest.raises(ValueError, match=match):
            Evaluator(engine, **kw)
    with pytest.raises(ValueError, match=r"task weights \[nan\] must be finite"):
        Evaluator(engine).evaluate([experts["e0"]], [task], weights=[float("nan")])


@pytest.mark.parametrize("weights", [[float("nan")], [1.0, 2.0], [-1.0]])
def test_evolve_rejects_bad_task_weights_before_writing(tmp_path, weights):
    with pytest.raises(ValueError, match="weights"):
        evolve(experts, [task], GenomeConfig(**SMALL), Evaluator(engine), tmp_path, task_weights=weights, progress=False)
    assert not (tmp_path / "config.json").exists()


def test_ensemble_inputs_are_checked():
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_predict([])
    with pytest.raises(ValueError, match=r"different numbers of examples: \[2, 3\]"):
        ensemble_predict([["A", "B"], ["A", "B", "C"]])


# ---------------------------------------------------------------------------------------------------------
# Data (copies of a real dataset in tmp dirs; /work/shared is never touched)
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def arc(tmp_path, monkeypatch):
    "GENOME_DATA_DIR / GENOME_SPLITS_DIR pointing into tmp_path, with a copy of ARC-Challenge."
    if not (RAW / "arc_challenge").is_dir(): pytest.skip("no shared data here")
    raw = tmp_path / "data" / "raw" / "arc_challenge"
    raw.mkdir(parents=True)
    shutil.copyfile(RAW / "arc_challenge" / "arc_challenge.jsonl", raw / "arc_challenge.jsonl")
    monkeypatch.setenv("GENOME_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GENOME_SPLITS_DIR", str(tmp_path / "splits"))
    return raw / "arc_challenge.jsonl"


def test_hand_edited_split_is_refused(arc, tmp_path):
    assert len(splits.load_split("arc_c", "test")) == 772
    f = tmp_path / "splits" / "seed0" / "arc_c" / "validation.jsonl"
    text = f.read_text()
    f.write_text(text.replace('"reference": "A"', '"reference": "B"', 1))
    with pytest.raises(data.DataError, match="arc_c/validation.jsonl: sha256 differs from .*manifest.json"):
        splits.load_split("arc_c", "validation")
    f.write_text("")                                                      # emptied by hand
    with pytest.raises(data.DataError, match="sha256 differs"):
        splits.load_split("arc_c", "validation")


def test_missing_field_names_file_line_and_field(arc):
    rows = arc.read_text().splitlines()
    r = json.loads(rows[41]); del r["gold"]; rows[41] = json.dumps(r)
    arc.write_text("\n".join(rows) + "\n")
    with pytest.raises(data.DataError, match="arc_challenge.jsonl:42: missing field 'gold'"):
        splits.load_split("arc_c", "validation")
    r["gold"] = "B"; rows[41] = json.dumps(r)
    arc.write_text("\n".join(rows) + "\n")
    with pytest.raises(data.DataError, match="arc_challenge.jsonl:42: field 'gold'='B' is not an integer"):
        splits.load_split("arc_c", "validation")


def test_empty_file_is_named(arc):
    arc.write_bytes(b"")
    with pytest.raises(data.DataError, match="arc_challenge.jsonl: empty file"):
        splits.load_split("arc_c", "validation")
    arc.write_bytes(b"\n\n")
    with pytest.raises(data.DataError, match="arc_challenge.jsonl: empty file"):
        splits.load_split("arc_c", "validation")


def test_non_utf8_bytes_are_named(arc, tmp_path):
    rows = arc.read_bytes().split(b"\n")
    rows[9] = rows[9].replace(b"Question", b"Qu\xe9stion", 1)            # a Latin-1 byte on line 10
    arc.write_bytes(b"\n".join(rows))
    with pytest.raises(data.DataError, match="arc_challenge.jsonl:10: not valid UTF-8"):
        splits.load_split("arc_c", "validation")
    bbh = tmp_path / "raw2" / "bbh"
    shutil.copytree(RAW / "bbh", bbh, copy_function=shutil.copyfile)   # copies without the read-only modes
    bbh.chmod(0o755)
    (bbh / "navigate.json").write_bytes(b'{"examples": [{"input": "\xff", "target": "Yes"}]}')
    with pytest.raises(data.DataError, match="navigate.json:1: not valid UTF-8"):
        data.load_bbh(bbh.parent)


def test_missing_dataset_or_data_directory_is_named(arc, tmp_path, monkeypatch):
    shutil.rmtree(arc.parent)
    with pytest.raises(data.DataError, match="missing data file .*arc_challenge/arc_challenge.jsonl"):
        splits.load_split("arc_c", "validation")
    monkeypatch.setenv("GENOME_DATA_DIR", str(tmp_path / "no_such_dir"))
    with pytest.raises(FileNotFoundError, match="no raw data to build it: GENOME_DATA_DIR=.*no_such_dir is not a directory"):
        splits.load_split("arc_c", "validation")


def test_damaged_manifest_is_named(arc, tmp_path):
    splits.load_split("arc_c", "validation")
    man = tmp_path / "splits" / "seed0" / "manifest.json"
    for blob, match in ((b"\xff\xfe{", "not valid UTF-8"), (b"", "not valid JSON"), (b"[1, 2]", "not a split manifest")):
        man.write_bytes(blob)
        with pytest.raises(data.DataError, match=f"manifest.json.*{match}.*delete it to rebuild"):
            splits.load_split("arc_c", "validation")


def test_corrupt_binary_formats_are_named(tmp_path):
    (tmp_path / "mmlu").mkdir(); (tmp_path / "mmlu" / "test.parquet").write_bytes(b"PAR1 but not parquet")
    with pytest.raises(data.DataError, match="mmlu/test.parquet: not a readable parquet file"):
        data.load_mmlu(tmp_path)
    (tmp_path / "drop").mkdir(); (tmp_path / "drop" / "drop_v0_dev.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 cut")
    with pytest.raises(data.DataError, match="drop_v0_dev.jsonl.gz: not a readable gzip file"):
        data.load_drop(tmp_path)


def test_registered_task_data_has_a_digest():
    "split_digest pins a synthetic task's data too (what a smoke run's config.json should record)."
    d = splits.split_digest(task.dataset, "validation")
    assert len(d) == 64 and d != splits.split_digest(task.dataset, "test")
    assert d == splits.split_digest(make_toy_task(n=4, seed=0).dataset, "validation")       # same examples, same digest
    assert d != splits.split_digest(make_toy_task(n=4, seed=1, name="toy_other").dataset, "validation")


# ---------------------------------------------------------------------------------------------------------
# Runs: kill -9, a full disk, two runs on one directory, resuming with another configuration
# ---------------------------------------------------------------------------------------------------------

WRITER = textwrap.dedent('''
    import json, sys, torch
    from pathlib import Path
    from genome_nb.genome import toy_genome
    from genome_nb.evolution import Individual, save_checkpoint
    from genome_nb.rundir import atomic_write
    d = Path(sys.argv[1])
    pop = [Individual(f"i{k}", toy_genome(seed=k, layers=8, dim=256, r=8), 0.5, None, {}) for k in range(8)]  # ~4 MB
    gen = torch.Generator().manual_seed(0)
    k = 0
    while True:
        save_checkpoint(d / "checkpoint.pt", k, pop, pop[k % 8], None, gen, [{"generation": j} for j in range(k + 1)], {"evaluations": k})
        atomic_write(d / "history.jsonl", "".join(json.dumps({"generation": j}) + "\\n" for j in range(k + 1)))
        k += 1
        print(k, flush=True)
''')


def test_kill_9_while_writing_checkpoints_leaves_a_loadable_state(tmp_path):
    rng = random.Random(0)
    template = toy_genome(seed=0, layers=8, dim=256, r=8)
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
        want = rng.randint(2, 6)
        for _ in range(want): proc.stdout.readline()         # it has written `want` checkpoints
        time.sleep(rng.uniform(0, 0.05))                       # then dies at a random point of the next write
        proc.send_signal(signal.SIGKILL); proc.wait(); proc.stdout.close()
        ckpt, pop, best, _ = load_checkpoint(tmp_path / "checkpoint.pt", template)
        assert ckpt["generation"] >= want - 1 and len(pop) == 8
        assert pop[3].genome == toy_genome(seed=3, layers=8, dim=256, r=8)
        hist = lines(tmp_path / "history.jsonl")
        assert [h["generation"] for h in hist] == list(range(len(hist))) and len(hist) >= want


class DiskFull:
    "Make the n-th call of a writer fail as a full disk does, after writing part of its bytes."
    def __init__(self, n: int): self.n, self.calls = n, 0
    def hit(self) -> bool:
        self.calls += 1
        return self.calls == self.n
    @staticmethod
    def error(): return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_checkpoint(monkeypatch, n):
    real, full = torch.save, DiskFull(n)
    def save(obj, f, *a, **kw):
        real(obj, f, *a, **kw)
        if full.hit():
            with open(f, "r+b") as fh: fh.truncate(os.path.getsize(f) // 2)   # half of it reached the disk
            raise full.error()
    monkeypatch.setattr(torch, "save", save)


def fail_replace(monkeypatch, name, n):
    real, full = os.replace, DiskFull(n)
    def replace(src, dst, *a, **kw):
        if Path(dst).name == name and full.hit(): raise full.error()
        return real(src, dst, *a, **kw)
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("where", ["checkpoint of generation 2", "history after generation 1", "final.json"])
def test_full_disk_fails_clearly_keeps_earlier_files_and_a_rerun_finishes(tmp_path, monkeypatch, reference, where):
    if where.startswith("checkpoint"): fail_checkpoint(monkeypatch, 3)          # generations 0, 1 written; 2 fails
    elif where.startswith("history"): fail_replace(monkeypatch, "history.jsonl", 2)
    else: fail_replace(monkeypatch, "final.json", 1)
    with pytest.raises(OSError) as err:
        run(tmp_path)
    assert err.value.errno == errno.ENOSPC and "No space left on device" in str(err.value)
    assert not (tmp_path / "final.json").exists()
    assert (tmp_path / "config.json").read_text() == (reference / "config.json").read_text().replace(str(reference), str(tmp_path))
    ckpt, pop, best, _ = load_checkpoint(tmp_path / "checkpoint.pt", experts["e0"])            # the last good state loads
    assert ckpt["generation"] == {"checkpoint": 1, "history": 1, "final.json": 2}[where.split()[0]]
    assert len(lines(tmp_path / "history.jsonl")) >= ckpt["generation"]
    monkeypatch.undo()                                                                         # the disk has room again
    assert run(tmp_path) == json.loads((reference / "final.json").read_text())
    assert (tmp_path / "final.json").read_bytes() == (reference / "final.json").read_bytes()


def test_history_matches_the_checkpoint_after_a_failed_history_write(tmp_path, monkeypatch):
    fail_replace(monkeypatch, "history.jsonl", 3)          # generation 2 (the last) is checkpointed, its history line is not
    with pytest.raises(OSError):
        run(tmp_path)
    monkeypatch.undo()
    run(tmp_path)
    assert [h["generation"] for h in lines(tmp_path / "history.jsonl")] == [0, 1, 2]


def test_a_failed_write_leaves_no_temporary_files_and_names_the_file(tmp_path, monkeypatch):
    fail_checkpoint(monkeypatch, 2)
    with pytest.raises(OSError) as err:
        run(tmp_path)
    assert strays(tmp_path) == []                                   # a half-written checkpoint on a full disk is clutter
    assert "checkpoint.pt" in str(err.value)


def test_score_cache_survives_torn_writes(tmp_path, monkeypatch):
    path = tmp_path / "scores.jsonl"
    ts = lambda s: TaskScore(task="toy", split="validation", mode="choice", score=s, fitness=s, metrics={}, predictions=["A"])
    c = ScoreCache(path)
    c.put("k1", ts(0.1)); c.put("k2", ts(0.2))
    good = path.read_bytes()
    with open(path, "ab") as f: f.write(b'{"key":"k3","value":{"task":"to')    # killed in the middle of an append
    c = ScoreCache(path)
    assert sorted(c.mem) == ["k1", "k2"] and path.read_bytes() == good      # torn tail dropped from the file too
    c.put("k4", ts(0.4))
    assert sorted(ScoreCache(path).mem) == ["k1", "k2", "k4"]                # the next run reads every record
    # a full disk in the middle of an append: the error propagates and the file keeps only whole lines
    real_fsync = os.fsync
    def fsync(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        c.put("k5", ts(0.5))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(ScoreCache(path).mem) == ["k1", "k2", "k4"] and path.read_bytes().endswith(b"\n")
    path.write_bytes(path.read_bytes().replace(b'"k2"', b'"k2', 1))           # edited by hand: an error, not a skip
    with pytest.raises(ValueError, match="scores.jsonl, line 2: .*the score cache is corrupted"):
        ScoreCache(path)


HOLDER = textwrap.dedent('''
    import sys, time
    from genome_nb.rundir import RunLock
    lock = RunLock(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
''')


def test_a_second_run_on_the_same_directory_is_refused(tmp_path, reference):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=f"run directory {tmp_path} is in use by another process"):
            run(tmp_path)
        with pytest.raises(RuntimeError, match="in use by another process"):
            run_baseline("best_single", experts, [task], None, Evaluator(engine), tmp_path, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]      # nothing interleaved into its directory
    finally:
        holder.send_signal(signal.SIGKILL); holder.wait(); holder.stdout.close()
    # the kernel drops the lock of a killed process: the directory is usable again
    assert run(tmp_path) == json.loads((reference / "final.json").read_text())


def test_resuming_with_another_configuration_is_refused_naming_the_difference(tmp_path, reference):
    d = tmp_path / "run"
    shutil.copytree(reference, d)
    (d / "final.json").unlink()                          # an unfinished run: checkpoint and config, no final.json
    before = (d / "config.json").read_bytes()
    with pytest.raises(ValueError, match=r"different configuration; refusing to resume. Differences: config.crossover_rate: 0.3 → 0.5"):
        run(d, crossover_rate=0.5)
    other = {**experts, "e1": experts["e0"] * 0.5}
    with pytest.raises(ValueError, match=r"experts.e1: '[0-9a-f]{64}' → '[0-9a-f]{64}'"):
        run(d, experts=other)
    with pytest.raises(ValueError, match=r"evaluator.n_val: None → 2"):
        evolve(experts, [task], GenomeConfig(**SMALL), Evaluator(engine, n_val=2), d, progress=False)
    with pytest.raises(ValueError, match=r"config.seed: 7 → 8"):           # a finished run answers only its own config
        run(reference, seed=8)
    assert (d / "config.json").read_bytes() == before and not (d / "final.json").exists()
    assert run(d) == json.loads((reference / "final.json").read_text())    # the same configuration resumes


# ---------------------------------------------------------------------------------------------------------
# Determinism and what config.json records
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    "`genome-nb evolve --profile smoke` twice, in two processes (each with its own hash seed), two result roots."
    roots = [tmp_path_factory.mktemp(f"smoke{i}") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "genome_nb.cli", "evolve", "--profile", "smoke", "--results", str(r)],
                              env={**ENV, "PYTHONHASHSEED": str(i)}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i, r in enumerate(roots)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    return [r / "smoke" / "evolve" / "genome_plus-toy-s41" for r in roots]


def test_the_same_command_twice_gives_identical_results(smoke_runs):
    a, b = smoke_runs
    for name in ("final.json", "history.jsonl", "predictions_test.jsonl", "config.json"):
        if name == "history.jsonl":                       # wall seconds differ; everything else must not
            strip = lambda p: [{k: v for k, v in h.items() if k != "seconds"} for h in lines(p)]
            assert strip(a / name) == strip(b / name)
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert sorted(p.relative_to(a).as_posix() for p in (a / "adapters").rglob("*")) == \
           sorted(p.relative_to(b).as_posix() for p in (b / "adapters").rglob("*"))
    for f in (a / "adapters").rglob("*.safetensors"):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()


def test_config_records_library_versions_and_the_data_manifest_key(smoke_runs):
    cfg = json.loads((smoke_runs[0] / "config.json").read_text())
    assert {"genome_nb", "python", "torch", "transformers", "peft", "numpy"} <= set(cfg["environment"])
    assert cfg["environment"] == run_environment()
    assert "data_manifest" in cfg and cfg["evaluator"]["engine"] and cfg["experts"]


def test_smoke_config_pins_the_toy_task_data(smoke_runs):
    text = (smoke_runs[0] / "config.json").read_text()
    toy = make_toy_task(n=8, seed=0)                         # the smoke profile's task, as cli.make_tasks builds it
    for split in ("validation", "test"):
        assert splits.split_digest(toy.dataset, split) in text


def test_environment_records_scoring_libraries():
    assert {"tokenizers", "safetensors", "sacrebleu"} <= set(run_environment())


def test_resume_ignores_the_manifest_digest_but_not_the_split_digests(tmp_path):
    # the manifest grows as other datasets' splits are built lazily: a finished run must still resume
    from genome_nb.evolution import check_same_config
    cfg = {"method": "genome", "data": {"t": {"validation": "a" * 64}}, "data_manifest": None, "environment": {"torch": "1"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    check_same_config(tmp_path, {**cfg, "data_manifest": "b" * 64, "environment": {"torch": "2"}})
    with pytest.raises(ValueError, match="data"):
        check_same_config(tmp_path, {**cfg, "data": {"t": {"validation": "c" * 64}}})
