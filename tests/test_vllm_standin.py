"VLLMEngine end to end without a GPU: against a stand-in for vLLM 0.33 (tests/vllm_standin.py) put into sys.modules."
import copy, gc, json, tempfile
from pathlib import Path

import pytest
import torch

import vllm_standin
from genome_nb.engines import HFEngine, split_candidates
from genome_nb.vllm_engine import VLLMEngine
from genome_nb.genome import LoraSpec, genome_from_model, random_lora_model
from genome_nb.models import embedded_dir, load_base


@pytest.fixture(scope="module")
def tiny():
    base, tok = load_base("tiny-random", dtype="fp32")
    spec = LoraSpec(base_model="tiny-random", r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
    gs = [genome_from_model(random_lora_model(copy.deepcopy(base), spec, seed=s, scale=0.5)) for s in (1, 2, 3)]
    hf = HFEngine(base, tok, batch_tokens=256, max_batch=8)
    texts = [hf.render(f"Answer with one letter.\n\n{q}", "Answer: ")
             for q in ("What is 2+2?", "Name a colour.", "Which planet is largest? Think about it.")]
    return hf, gs, texts


@pytest.fixture
def standin():
    with vllm_standin.install() as m:
        yield m


def flat(rows): return [v for g in rows for r in g for v in r]


def assert_same_scale(a, b, eps=1e-4):
    assert len(flat(a)) == len(flat(b))
    worst = max(abs(x - y) for x, y in zip(flat(a), flat(b)))
    assert worst <= eps, f"largest |Δ log-prob| {worst:.2e} > {eps}"


def test_starts_with_the_package_names(standin):
    "fp32 / bf16 and the tiny-random alias reach vLLM as 'float32' / 'bfloat16' and a local directory."
    for dt, want in (("fp32", "float32"), ("bf16", "bfloat16"), ("auto", "auto"), (torch.float16, "float16")):
        with VLLMEngine("tiny-random", dtype=dt) as e:
            assert e.llm.kwargs["dtype"] == want
            assert (Path(e.llm.model_path) / "config.json").is_file()
    with VLLMEngine("tiny-random", dtype="auto") as e:
        assert e.resolved_dtype == "torch.float16"     # vLLM's 'auto' runs an fp32 checkpoint in fp16: recorded


def test_embedded_alias_is_its_local_directory(standin):
    with VLLMEngine("smollm2-135m-instruct", dtype="bf16") as e:
        assert e.llm.model_path == str(embedded_dir())


def test_unknown_dtype_is_refused_naming_it(standin):
    with pytest.raises(ValueError, match="dtype='int8'"):
        VLLMEngine("tiny-random", dtype="int8")


def test_scores_are_on_hfengine_scale(standin, tiny):
    "Letters, words, option texts, texts without a common prefix; three genomes in two calls (max_loras=2)."
    hf, gs, texts = tiny
    loose = ["2+2 = ", "colour:", "Largest planet? Think about it, then answer: "]
    letters = [["A", "B", "C", "D"]] * 3
    options = [["Neutral", " remain the same", "go up by a lot"], ["A", "B"], ["red", "a light shade of blue"]]
    mixed = [["A", "B"], ["yes", "no", "maybe so"], ["red", "blue"]]
    genomes = [gs[0], None, gs[1]]
    with VLLMEngine("tiny-random", dtype="fp32", max_loras=2) as ve:
        for tx, labels in ((texts, letters), (texts, options), (loose, options), (texts, mixed)):
            assert_same_scale(ve.score_choices(genomes, tx, labels), hf.score_choices(genomes, tx, labels))
        assert max(c["adapters"] for c in ve.llm.calls) <= 2
        assert_same_scale([ve.prompt_logprobs(genomes, texts)], [hf.prompt_logprobs(genomes, texts)])
        assert ve.generate([gs[0]], texts[:2], max_new_tokens=5) == hf.generate([gs[0]], texts[:2], max_new_tokens=5)


def test_letters_are_not_renormalised(standin, tiny):
    "A letter's score is log p(letter), not log p(letter | letters): the letters' probabilities sum to less than 1."
    hf, gs, texts = tiny
    with VLLMEngine("tiny-random", dtype="fp32") as ve:
        lp = ve.score_choices([None], texts, [["A", "B"]] * 3)[0]
    assert all(torch.tensor(r).exp().sum() < 0.5 for r in lp)


def test_more_letters_than_max_logprobs(standin, tiny):
    "26 single-token labels (more than vLLM's max_logprobs=20): still scored, on the same scale."
    hf, gs, texts = tiny
    letters = [[chr(65 + k) for k in range(26)]] * 3
    with VLLMEngine("tiny-random", dtype="fp32") as ve:
        assert_same_scale(ve.score_choices([gs[0]], texts, letters), hf.score_choices([gs[0]], texts, letters))


def test_vllm_without_logprob_token_ids():
    "A vLLM whose SamplingParams lacks logprob_token_ids: every label through prompt_logprobs, same scores."
    with vllm_standin.install(supports_logprob_token_ids=False):
        base, tok = load_base("tiny-random", dtype="fp32")
        hf = HFEngine(base, tok)
        texts = [hf.render("Pick one.", "Answer: "), hf.render("Pick another one, please.", "Answer: ")]
        labels = [["A", "B", "C"], ["yes", "no"]]
        with VLLMEngine("tiny-random", dtype="fp32") as ve:
            assert ve.single_token == "prompt_logprobs"
            assert_same_scale(ve.score_choices([None], texts, labels), hf.score_choices([None], texts, labels))
            fp = ve.fingerprint
        with pytest.raises(ValueError, match="no SamplingParams.logprob_token_ids"):
            VLLMEngine("tiny-random", dtype="fp32", single_token="logprob_token_ids")
    with vllm_standin.install():
        with VLLMEngine("tiny-random", dtype="fp32") as ve:
            assert ve.single_token == "logprob_token_ids" and ve.fingerprint != fp


def test_lora_rank_comes_from_the_adapters(standin, tiny):
    hf, gs, texts = tiny
    with VLLMEngine("tiny-random", dtype="fp32", lora_rank=gs[0].spec.r) as ve:
        assert ve.llm.kwargs["max_lora_rank"] == 8      # the smallest rank vLLM allows ≥ 4
        ve.score_choices([gs[0]], texts[:1], [["A", "B"]])
    base, _ = load_base("tiny-random", dtype="fp32")
    big = genome_from_model(random_lora_model(copy.deepcopy(base), LoraSpec(base_model="tiny-random", r=12, lora_alpha=8,
                                                                            target_modules=("q_proj",)), seed=0))
    with VLLMEngine("tiny-random", dtype="fp32", lora_rank=4) as ve:
        with pytest.raises(ValueError, match="r=12"):
            ve.score_choices([big], texts[:1], [["A", "B"]])
    with pytest.raises(ValueError, match="up to 512"):
        VLLMEngine("tiny-random", dtype="fp32", lora_rank=1000)


def test_adapters_per_call_fit_max_cpu_loras(standin, tiny):
    hf, gs, texts = tiny
    with VLLMEngine("tiny-random", dtype="fp32", max_loras=1) as ve:
        assert ve.genomes_per_call == 1 and ve.llm.kwargs["max_cpu_loras"] == 1
        ve.score_choices(gs, texts[:1], [["A", "B"]])
        assert [c["adapters"] for c in ve.llm.calls] == [1, 1, 1]
    with pytest.raises(ValueError, match="max_cpu_loras=1 must be ≥ max_loras=2"):
        VLLMEngine("tiny-random", dtype="fp32", max_loras=2, max_cpu_loras=1)


def test_temporary_folders_are_removed(standin, tiny):
    hf, gs, texts = tiny
    ve = VLLMEngine("tiny-random", dtype="fp32")
    ve.score_choices([gs[0]], texts[:1], [["A", "B"]])
    work, model = ve._workdir, Path(ve.llm.model_path)
    assert any(ve.adapter_dir.iterdir()) and model.is_relative_to(work)
    ve.close()
    assert not work.exists()
    ve = VLLMEngine("tiny-random", dtype="fp32")     # dropped without close: the finalizer removes it
    work = ve._workdir
    del ve; gc.collect()
    assert not work.exists()
    keep = Path(tempfile.mkdtemp())
    with VLLMEngine("tiny-random", dtype="fp32", adapter_dir=keep) as ve:
        ve.score_choices([gs[0]], texts[:1], [["A", "B"]])
    assert any(keep.iterdir())                                    # a folder the caller gave stays


def test_fingerprint_has_version_dtype_and_mode():
    fps = {}
    for version in ("0.33.0", "0.33.1"):
        with vllm_standin.install(version=version):
            for dt in ("fp32", "bf16"):
                with VLLMEngine("tiny-random", dtype=dt) as ve:
                    fps[version, dt] = ve.fingerprint
                    assert ve.vllm_version == version
    assert len(set(fps.values())) == 4


def test_make_engine_passes_profile_engine_kwargs(standin):
    from genome_nb.profiles import Profile
    from genome_nb.runs import make_engine
    p = Profile("v", base="tiny-random", dtype="fp32", engine="vllm", experts="random:2", tasks=("toy",),
                engine_kwargs=dict(gpu_memory_utilization=0.45, max_model_len=2048, tensor_parallel_size=1))
    e = make_engine(p)
    try:
        kw = e.llm.kwargs
        assert (kw["gpu_memory_utilization"], kw["max_model_len"], kw["tensor_parallel_size"]) == (0.45, 2048, 1)
        assert (kw["dtype"], kw["max_lora_rank"]) == ("float32", 8)   # random:<n> experts have rank 4
    finally: e.close()
    with pytest.raises(ValueError, match="engine_kwargs"):
        Profile("v", base="tiny-random", engine="vllm", engine_kwargs=dict(gpu_memory_utilization=0))


def test_paper_profile_starts(standin, monkeypatch):
    "The paper profile (Gemma-2, bf16, built experts) gets past vLLM's constructor checks once its model is local."
    from genome_nb.profiles import PROFILES
    from genome_nb.runs import make_engine
    d = Path(tempfile.mkdtemp())
    (d / "config.json").write_text(json.dumps(dict(vocab_size=256000, dtype="bfloat16")))
    import genome_nb.vllm_engine as E
    monkeypatch.setattr(E, "load_tokenizer", lambda name: None)   # no Gemma tokenizer offline; vLLM's checks are the point
    p = PROFILES["paper"]
    e = make_engine(type(p)(**{**p.__dict__, "base": str(d)}))
    try: assert (e.llm.kwargs["dtype"], e.llm.kwargs["max_lora_rank"]) == ("bfloat16", 8)
    finally: e.close()


def test_check_gpu_runs_end_to_end_on_the_standin(standin):
    "The GPU check's code path, on CPU: the stand-in computes what HFEngine computes, so it must pass exactly."
    from genome_nb.cli import check_gpu
    res = check_gpu("tiny-random", n_prompts=8, n_adapters=2, dtype="fp32", device="cpu")
    assert res["passed"] and res["agreement"] == 1.0 and res["mean_abs_delta"] < 1e-4
    assert res["prompts"] == 16 and res["labels"] == 64 and res["throughput_ratio"] > 0
