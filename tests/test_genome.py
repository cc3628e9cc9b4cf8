"LoraGenome, LoraSpec and PEFT adapter I/O (genome_nb.genome)."
import dataclasses, json, pickle

import pytest
import torch
from hypothesis import given, settings, strategies as st
from peft import PeftModel

from genome_nb.genome import (CONFIG_NAME, WEIGHTS_NAME, LoraGenome, LoraSpec, check_compatible, genome_from_model,
                              load_adapter, random_lora_model, save_adapter, set_model_genome)
from genome_nb.models import load_base

SPEC = LoraSpec("tiny-random", r=4, lora_alpha=8, target_modules=("v_proj", "q_proj"))
IDS = torch.tensor([[1, 17, 290, 5, 3000, 42, 9]])


def tiny_genome(seed=0, spec=SPEC):
    model, _ = load_base("tiny-random", dtype="fp32")
    return genome_from_model(random_lora_model(model, spec, seed=seed))


@pytest.fixture(scope="module")
def genome():
    return tiny_genome(seed=1)


# ---------------------------------------------------------------- LoraSpec
def test_spec_normalises_and_validates():
    assert SPEC.target_modules == ("q_proj", "v_proj") and SPEC.scaling == 2.0
    with pytest.raises(ValueError, match="r must be a positive integer"):
        LoraSpec("m", r=0, lora_alpha=1, target_modules=("q_proj",))
    with pytest.raises(ValueError, match="lora_alpha"):
        LoraSpec("m", r=2, lora_alpha=float("nan"), target_modules=("q_proj",))
    with pytest.raises(ValueError, match="target_modules"):
        LoraSpec("m", r=2, lora_alpha=1, target_modules=())


def test_spec_peft_round_trip_and_refusals(tmp_path):
    SPEC.to_peft().save_pretrained(str(tmp_path))
    d = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert LoraSpec.from_peft(d) == SPEC
    assert LoraSpec.from_peft(SPEC.to_peft()) == SPEC
    for field, value in [("use_rslora", True), ("use_dora", True), ("bias", "all"), ("modules_to_save", ["lm_head"])]:
        with pytest.raises(ValueError, match=field):
            LoraSpec.from_peft(d | {field: value})
    with pytest.raises(ValueError, match="rank_pattern"):
        LoraSpec.from_peft(d | {"rank_pattern": {"q_proj": 16}})
    with pytest.raises(ValueError, match="alpha_pattern"):
        LoraSpec.from_peft(d | {"alpha_pattern": {"v_proj": 1}})
    assert LoraSpec.from_peft(d | {"rank_pattern": {"q_proj": 4}}) == SPEC  # uniform pattern is plain LoRA
    with pytest.raises(ValueError, match="pattern"):
        LoraSpec.from_peft(d | {"target_modules": ".*proj"})
    with pytest.raises(ValueError, match="base_model"):
        LoraSpec.from_peft(d | {"base_model_name_or_path": None})


# ---------------------------------------------------------------- LoraGenome basics
def test_genome_stores_float32_cpu_copies_in_natural_order():
    src = {"layers.10.x": torch.ones(2, dtype=torch.bfloat16), "layers.2.x": torch.zeros(3, dtype=torch.float64)}
    g = LoraGenome(src)
    assert list(g) == ["layers.2.x", "layers.10.x"]
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" and v.is_contiguous() for v in g.values())
    src["layers.2.x"][0] = 7.0  # the caller's tensor changing does not change the individual
    assert g["layers.2.x"][0] == 0
    with pytest.raises(TypeError, match="item assignment"):
        g["layers.2.x"] = torch.ones(3)
    with pytest.raises(AttributeError, match="immutable"):
        g.spec = SPEC
    with pytest.raises(TypeError, match="int64"):
        LoraGenome({"a": torch.arange(3)})


def test_arithmetic_names_first_mismatch(genome):
    assert torch.equal((genome + genome).flatten(), 2 * genome.flatten())
    assert torch.equal((genome - genome).flatten(), torch.zeros(genome.numel()))
    assert torch.equal((-genome).flatten(), -genome.flatten())
    assert torch.allclose((genome / 4).flatten(), 0.25 * genome.flatten())
    assert (genome * 3).spec == genome.spec
    first = next(iter(genome))
    broken = LoraGenome({k: (torch.zeros(2) if k == first else v) for k, v in genome.items()})
    with pytest.raises(ValueError, match=first.replace(".", r"\.")):
        genome + broken
    fewer = LoraGenome({k: v for k, v in genome.items() if k != first})
    with pytest.raises(ValueError, match="missing"):
        genome - fewer
    with pytest.raises(TypeError):
        genome * genome
    with pytest.raises(ZeroDivisionError):
        genome / 0


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3), min_size=1, max_size=4),
       seed=st.integers(0, 2**31 - 1))
def test_flatten_unflatten_round_trip(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    g = LoraGenome({f"t{i}": torch.randn(s, generator=gen) for i, s in enumerate(shapes)})
    flat = g.flatten()
    assert flat.shape == (g.numel(),) and flat.dtype == torch.float32
    assert g.unflatten(flat) == g
    assert g.unflatten(flat * 2) == g * 2
    with pytest.raises(ValueError, match="1-D tensor"):
        g.unflatten(torch.zeros(g.numel() + 1))


def test_digest_is_content_identity(genome):
    same = LoraGenome(dict(reversed(list(genome.items()))), genome.spec)
    assert same.digest() == genome.digest() and same == genome and hash(same) == hash(genome)
    flat = genome.flatten().clone()
    flat[123] = torch.nextafter(flat[123], torch.tensor(1e9))  # one ulp in one weight
    assert genome.unflatten(flat).digest() != genome.digest()
    assert LoraGenome(dict(genome.items()), dataclasses.replace(SPEC, lora_alpha=16)).digest() != genome.digest()
    assert LoraGenome(dict(genome.items()), None).digest() != genome.digest()
    assert pickle.loads(pickle.dumps(genome)) == genome


def test_repr_and_lora_pairs(genome):
    assert repr(genome) == f"LoraGenome(8 tensors, {genome.numel():,} params, r=4, digest={genome.digest()[:8]})"
    pairs = genome.lora_pairs()
    assert list(pairs) == [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]
    A, B = pairs["model.layers.0.self_attn.v_proj"]
    assert A.shape == (4, 64) and B.shape == (32, 4)  # grouped-query attention: v_proj is 64 -> 32
    with pytest.raises(ValueError, match="not a PEFT LoRA tensor"):
        LoraGenome({"a": torch.ones(2)}).lora_pairs()


def test_spec_checked_against_tensors(genome):
    with pytest.raises(ValueError, match=r"rank 4, but the adapter config says r=8"):
        LoraGenome(dict(genome.items()), dataclasses.replace(SPEC, r=8))
    with pytest.raises(ValueError, match="not in target_modules"):
        LoraGenome(dict(genome.items()), dataclasses.replace(SPEC, target_modules=("q_proj",)))


# ---------------------------------------------------------------- PEFT I/O
def test_saved_adapter_loads_in_peft_with_the_package_logits(genome, tmp_path):
    "save_adapter -> PeftModel.from_pretrained gives the logits of W + (alpha/r) B A written by hand."
    path = save_adapter(genome, tmp_path / "ind")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ind"]  # no temporary directory left behind
    base, _ = load_base("tiny-random", dtype="fp32")
    peft_model = PeftModel.from_pretrained(base, str(path)).eval()
    by_hand, _ = load_base("tiny-random", dtype="fp32")
    plain, _ = load_base("tiny-random", dtype="fp32")
    with torch.no_grad():
        for module, (A, B) in genome.lora_pairs().items():
            by_hand.get_submodule(module).weight += genome.spec.scaling * B @ A
        got, want, bare = peft_model(IDS).logits, by_hand(IDS).logits, plain(IDS).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    assert (got - bare).abs().max() > 1e-3  # the adapter changes the output, so the check can fail
    assert genome_from_model(peft_model) == genome
    assert load_adapter(path, base_model="tiny-random") == genome


def test_set_model_genome_writes_into_live_model(genome):
    model, _ = load_base("tiny-random", dtype="fp32")
    pm = random_lora_model(model, SPEC, seed=99)
    assert genome_from_model(pm) != genome
    assert genome_from_model(set_model_genome(pm, genome)) == genome


def test_save_is_atomic_and_refuses_to_clobber(genome, tmp_path):
    path = save_adapter(genome, tmp_path / "a")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_adapter(genome * 2, path)
    save_adapter(genome * 2, path, overwrite=True)
    assert load_adapter(path) == genome * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    with pytest.raises(ValueError, match="no LoraSpec"):
        save_adapter(LoraGenome(dict(genome.items())), tmp_path / "b")
    other = save_adapter(genome, tmp_path / "c", base_model="someone/else")
    assert load_adapter(other).spec.base_model == "someone/else"


def test_load_errors_name_what_is_wrong(genome, tmp_path):
    good = save_adapter(genome, tmp_path / "good")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_adapter(tmp_path / "empty")
    (tmp_path / "empty" / CONFIG_NAME).write_text((good / CONFIG_NAME).read_text())
    (tmp_path / "empty" / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_adapter(tmp_path / "empty")
    with pytest.raises(ValueError, match="expected 'google/gemma-2-2b-it'"):
        load_adapter(good, base_model="google/gemma-2-2b-it")

    def variant(name, config=None, tensors=None, raw=None):
        d = tmp_path / name
        d.mkdir()
        (d / CONFIG_NAME).write_text(json.dumps(config or json.loads((good / CONFIG_NAME).read_text())))
        if raw is not None:
            (d / WEIGHTS_NAME).write_bytes(raw)
        else:
            from safetensors.torch import save_file
            save_file(tensors or dict(genome.items()), str(d / WEIGHTS_NAME))
        return d

    blob = (good / WEIGHTS_NAME).read_bytes()
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME}.*not a readable safetensors"):
        load_adapter(variant("trunc", raw=blob[: len(blob) // 2]))
    nan_name = list(genome)[3]
    bad = dict(genome.items()) | {nan_name: genome[nan_name].clone().fill_(float("nan"))}
    with pytest.raises(ValueError, match=f"{nan_name}.*NaN/Inf"):
        load_adapter(variant("nan", tensors=bad))
    cfg = json.loads((good / CONFIG_NAME).read_text()) | {"r": 8}
    with pytest.raises(ValueError, match=r"lora_A.weight' has shape \(4, 64\), i.e. rank 4, but the adapter config says r=8"):
        load_adapter(variant("rank", config=cfg))
    extra = dict(genome.items()) | {"base_model.model.lm_head.weight": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match="lm_head.weight' is not a LoRA"):
        load_adapter(variant("extra", tensors=extra))
    cfg = json.loads((good / CONFIG_NAME).read_text()) | {"use_dora": True}
    with pytest.raises(ValueError, match="use_dora"):
        load_adapter(variant("dora", config=cfg))
    cfg = json.loads((good / CONFIG_NAME).read_text()) | {"target_modules": ["q_proj"]}
    with pytest.raises(ValueError, match=r"\['v_proj'\] not listed in target_modules"):
        load_adapter(variant("targets", config=cfg))


def test_check_compatible_names_the_genome_and_the_difference(genome):
    check_compatible([genome, genome * 0.5, -genome])
    r2 = tiny_genome(spec=dataclasses.replace(SPEC, r=2, lora_alpha=4))
    with pytest.raises(ValueError, match="genome 2 differs from genome 0 in r: 2 vs 4"):
        check_compatible([genome, genome, r2])
    q_only = tiny_genome(spec=dataclasses.replace(SPEC, target_modules=("q_proj",)))
    with pytest.raises(ValueError, match="genome 1 differs from genome 0 in target_modules"):
        check_compatible([genome, q_only])
    other_base = LoraGenome(dict(genome.items()), dataclasses.replace(SPEC, base_model="smollm2-135m-instruct"))
    with pytest.raises(ValueError, match="genome 1 differs from genome 0 in base_model"):
        check_compatible([genome, other_base])
    with pytest.raises(ValueError, match="at least one"):
        check_compatible([])
