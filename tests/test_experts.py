"Expert adapters: readers of the ten instruction sources, loss masking, training, idempotence, resolution."
import json
import os
from pathlib import Path

import peft
import pytest
import safetensors.torch
import torch

from genome_nb import experts as ex, expert_pools
from genome_nb.experts import (DATA_MERGE, EXPERTS, DataFormatError, ExpertConfig, encode_chat, merge_rows, read_oasst1,
                               read_source, recipe_hash, select_rows, train_expert)
from genome_nb.expert_pools import build_experts_main, expert_dirs, experts_root, train_experts
from genome_nb.models import TINY, load_base

# Rows per source in ../shared/data/instruct (SOURCES.md), after the readers' choices.
# cot and flan_v2 leave out the pool and test rows of the six target tasks read from them (splits.heldout_rows):
# 18,858 - 6,172 and 17,988 - 1,400 (CODAH).
COUNTS = dict(cot=12686, code_alpaca=2015, flan_v2=16588, gpt4_alpaca=999, oasst1=188, open_orca=284, science=1992,
              sharegpt=1923, wizardlm=1966, lima=1029)
TINY_CFG = ExpertConfig(max_examples=6, batch_size=3, micro_batch_size=2, max_seq_len=64)


def _data_dir():
    try: return ex._instruct_dir()
    except FileNotFoundError: return None


needs_data = pytest.mark.skipif(_data_dir() is None, reason="instruction data not found (set GENOME_DATA_DIR)")


@pytest.fixture(scope="module")
def sources():
    return {n: read_source(n) for n in EXPERTS}


@pytest.fixture(scope="module")
def tiny():
    return load_base(TINY)


def _roles_ok(messages):
    roles = [m["role"] for m in messages]
    if roles[0] == "system": roles = roles[1:]
    return bool(roles) and roles == ["user", "assistant"] * (len(roles) // 2)


# --- readers -------------------------------------------------------------------------------------

@needs_data
def test_reader_counts_roles_and_ids(sources):
    assert {n: len(x) for n, x in sources.items()} == COUNTS
    assert sources["code_alpaca"].skipped == 2 and sum(x.skipped for x in sources.values()) == 2
    assert (sources["cot"].heldout, sources["flan_v2"].heldout) == (6172, 1400)
    from genome_nb.splits import heldout_rows
    ids = {e["id"] for n in ("cot", "flan_v2") for e in sources[n]}
    for name in ("qasc", "codah"):
        assert not {f"{'flan_v2' if name == 'codah' else 'cot'}:{r}" for r in heldout_rows(name)} & ids
    for n, x in sources.items():
        assert len({e["id"] for e in x}) == len(x), n
        for e in x:
            assert e["source"] == n and e["id"].startswith(n + ":")
            assert _roles_ok(e["messages"]), (n, e["id"])
            assert all(isinstance(m["content"], str) and m["content"].strip() for m in e["messages"]), (n, e["id"])


@needs_data
def test_reader_contents(sources):
    cot = sources["cot"][0]["messages"]
    assert "\\n" not in cot[0]["content"] and "\n" in cot[0]["content"]  # FLAN's literal \n unescaped
    assert cot[1]["content"].endswith("So the answer is (C).")
    niv2 = sources["flan_v2"][0]["messages"][0]["content"]
    assert niv2.startswith("Definition: ") and "\n\nInput: " in niv2 and niv2.endswith("\nOutput:")
    sci = sources["science"][0]["messages"]
    assert sci[0]["content"].startswith("Below are the abstract") and "|||" not in sci[0]["content"] + sci[1]["content"]
    assert [m["role"] for m in sources["open_orca"][0]["messages"]] == ["system", "user", "assistant"]
    assert sum(len(e["messages"]) > 2 for e in sources["lima"]) == 29  # LIMA's history turns
    assert max(len(e["messages"]) for e in sources["oasst1"]) > 2


@needs_data
def test_data_merge_is_the_union(sources):
    merged = read_source(DATA_MERGE)
    assert len(merged) == sum(COUNTS.values())
    assert {e["source"] for e in merged} == set(EXPERTS)


@needs_data
def test_oasst_all_paths():
    top, every = read_source("oasst1"), read_source("oasst1", oasst_paths="all")
    assert len(every) == 1185 and {e["id"] for e in top} <= {e["id"] for e in every}


def _oasst(tmp_path, rows):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


def test_oasst_tree_rebuild(tmp_path):
    m = lambda i, parent, role, rank=None, **kw: dict(message_id=i, parent_id=parent, text=f"text {i}", role=role, rank=rank, **kw)
    rows = [m("r", None, "prompter"),
            m("a1", "r", "assistant", 1), m("a0", "r", "assistant", 0), m("ax", "r", "assistant", 2, deleted=True),
            m("u", "a0", "prompter"), m("b", "u", "assistant"), m("u2", "b", "prompter"),  # a trailing prompter is dropped
            m("r2", None, "prompter")]                                                      # a root with no answer
    top = read_oasst1(_oasst(tmp_path, rows))
    assert [[x["content"] for x in e["messages"]] for e in top] == [["text r", "text a0", "text u", "text b"]]
    every = read_oasst1(_oasst(tmp_path, rows), paths="all")
    assert sorted(e["id"].split(":")[-1] for e in every) == ["a0", "a1", "b"]
    with pytest.raises(DataFormatError, match=r"t.jsonl: line 1: field 'role'"):
        read_oasst1(_oasst(tmp_path, [m("r", None, "moderator")]))


@pytest.mark.parametrize("name,content,match", [
    ("code_alpaca", [{"instruction": "x", "input": ""}], r"code_alpaca/a.json: row 0: field 'output' is missing"),
    ("code_alpaca", [{"instruction": "x", "output": 3}], r"row 0: field 'output' should be a string"),
    ("code_alpaca", {"instruction": "x"}, r"a.json: expected a JSON list"),
    ("lima", [{"instruction": "x", "output": "y", "history": [["only one"]]}], r"row 0: field 'history'"),
    ("sharegpt", [{"instruction": "x", "output": "y"}], r"row 0: field 'response' is missing"),
])
def test_malformed_json_names_file_row_and_field(tmp_path, name, content, match):
    d = tmp_path / "instruct" / ex.FOLDERS[name]
    d.mkdir(parents=True)
    (d / "a.json").write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=match):
        read_source(name, tmp_path)


def test_malformed_tsv_jsonl_and_niv2(tmp_path):
    root = tmp_path / "instruct"
    (root / "cot").mkdir(parents=True)
    (root / "cot" / "x_train.tsv").write_text("q\ta\tr\nonly two\tfields\n")
    with pytest.raises(DataFormatError, match=r"x_train.tsv: line 2: expected 3 tab-separated fields"):
        read_source("cot", tmp_path)
    (root / "open_orca").mkdir()
    (root / "open_orca" / "v.jsonl").write_text('{"input": {"messages": []}}\n{oops\n')
    with pytest.raises(DataFormatError, match=r"v.jsonl: line 2: not valid JSON"):
        read_source("open_orca", tmp_path)
    (root / "flan_niv2").mkdir()
    (root / "flan_niv2" / "task1.json").write_text(json.dumps({"Definition": ["d"], "Instances": [{"input": "i", "output": []}]}))
    with pytest.raises(DataFormatError, match=r"task1.json: Instances\[0\]: field 'output'"):
        read_source("flan_v2", tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no"):
        read_source("lima", tmp_path)
    with pytest.raises(KeyError, match="unknown expert"):
        read_source("sharegpt4", tmp_path)


# --- tokens and loss mask ----------------------------------------------------------------------

def test_loss_mask_keeps_exactly_the_assistant_turns(tiny):
    _, tok = tiny
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"},
            {"role": "assistant", "content": "Rome."}]
    enc = encode_chat(tok, conv, 1024)
    assert len(enc["input_ids"]) == len(enc["labels"])
    learned = tok.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l != -100])
    assert learned == "Paris.<|im_end|>\nRome.<|im_end|>\n"
    masked = tok.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l == -100])
    assert "Capital of France?" in masked and "Be brief." in masked and "Paris" not in masked
    assert tok.decode(enc["input_ids"]) == tok.apply_chat_template(conv, tokenize=False)


def test_truncation_keeps_assistant_header_and_budget(tiny):
    _, tok = tiny
    conv = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "fine " * 5 + "done"}]
    enc = encode_chat(tok, conv, 48)
    assert len(enc["input_ids"]) == 48
    text = tok.decode(enc["input_ids"])
    assert "<|im_start|>assistant\nfine fine" in text and text.endswith("done<|im_end|>\n")
    # both long: the budget is shared in proportion (LLaMA-Factory's infer_seqlen)
    assert ex._infer_seqlen(100, 100, 50) == (25, 25) and ex._infer_seqlen(10, 100, 50) == (10, 40)
    assert ex._infer_seqlen(100, 10, 50) == (40, 10)


# --- config ------------------------------------------------------------------------------------

def test_config_round_trip_and_validation(tmp_path):
    c = ExpertConfig(max_examples=None, target_modules=["q_proj", "k_proj"], seed=7)
    assert ExpertConfig.from_json(c.to_json()) == c and c.target_modules == ("q_proj", "k_proj")
    (tmp_path / "c.json").write_text(c.to_json())
    assert ExpertConfig.from_json(tmp_path / "c.json") == c
    for bad, field in [(dict(lr=0), "lr"), (dict(dropout=1.0), "dropout"), (dict(max_examples=0), "max_examples"),
                       (dict(schedule="step"), "schedule"), (dict(target_modules=()), "target_modules")]:
        with pytest.raises(ValueError, match=f"ExpertConfig.{field}="):
            ExpertConfig(**bad)
    with pytest.raises(ValueError, match="no field"):
        ExpertConfig.from_dict({"rank": 8})
    assert ExpertConfig.paper("lima").epochs == 5 and ExpertConfig.paper("lima").max_examples is None


def test_row_selection_is_seeded_and_merge_is_a_subset():
    rows = {n: [{"id": f"{n}:{i}", "source": n, "messages": []} for i in range(50)] for n in EXPERTS}
    c = ExpertConfig(max_examples=21, seed=4)
    sel = {n: select_rows(r, c) for n, r in rows.items()}
    assert all(len(s) == 21 for s in sel.values())
    assert sel["cot"] == select_rows(rows["cot"], c) != select_rows(rows["cot"], ExpertConfig(max_examples=21, seed=5))
    merged = merge_rows(rows, c)
    assert len(merged) == 21 and {e["id"] for e in merged} <= {e["id"] for s in sel.values() for e in s}
    assert len(merge_rows(rows, ExpertConfig(max_examples=None))) == 500


# --- training -----------------------------------------------------------------------------------

def _examples(n=8):
    return [{"id": f"toy:{i}", "source": "toy",
             "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(n)]


def test_train_expert_writes_a_loadable_deterministic_adapter(tmp_path, tiny):
    dtype, n_params = tiny[0].dtype, len(list(tiny[0].parameters()))
    torch.manual_seed(123); expected = torch.rand(3)
    torch.manual_seed(123)
    d1 = train_expert(tiny, _examples(), tmp_path / "a", TINY_CFG, progress=False)
    assert torch.equal(torch.rand(3), expected)  # the caller's global RNG is untouched
    d2 = train_expert(tiny, _examples(), tmp_path / "b", TINY_CFG, progress=False)
    d3 = train_expert(tiny, _examples(), tmp_path / "c", ExpertConfig(**{**TINY_CFG.to_dict(), "seed": 1}), progress=False)
    w1, w2, w3 = (safetensors.torch.load_file(d / "adapter_model.safetensors") for d in (d1, d2, d3))
    assert w1.keys() == w2.keys() and len(w1) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)
    assert all(v.dtype == torch.float32 for v in w1.values())
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in w1.items())  # B moved off zero
    model = peft.PeftModel.from_pretrained(load_base(TINY)[0], d1)
    assert model.peft_config["default"].r == 8 and model.peft_config["default"].lora_alpha == 16
    assert model.peft_config["default"].base_model_name_or_path == TINY
    assert set(model.peft_config["default"].target_modules) == {"q_proj", "v_proj"}
    info = json.loads((d1 / "training.json").read_text())
    assert info["source"] == "toy" and info["steps"] == 2 and info["examples"] == 6 and len(info["loss"]) == 2
    assert ExpertConfig.from_dict(info["config"]) == TINY_CFG and len(info["rows"]) == 6
    assert info["recipe_hash"] == recipe_hash(TINY_CFG, TINY, "toy", select_rows(_examples(), TINY_CFG))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left
    assert tiny[0].dtype == dtype and len(list(tiny[0].parameters())) == n_params  # the caller's model is untouched


def test_micro_batching_does_not_change_the_update(tmp_path, tiny):
    cfg = ExpertConfig(max_examples=6, batch_size=6, micro_batch_size=6, max_seq_len=64, dropout=0.0, precision="fp32")
    one = train_expert(tiny, _examples(), tmp_path / "one", cfg, progress=False)
    split = train_expert(tiny, _examples(), tmp_path / "split",
                         ExpertConfig(**{**cfg.to_dict(), "micro_batch_size": 1}), progress=False)
    a, b = (safetensors.torch.load_file(d / "adapter_model.safetensors") for d in (one, split))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    la, lb = (json.loads((d / "training.json").read_text())["loss"][0] for d in (one, split))
    assert abs(la - lb) < 1e-4


@needs_data
def test_train_experts_is_idempotent_and_retrains_on_change(tmp_path):
    names = ["cot", "lima", DATA_MERGE]
    dirs = train_experts(TINY, tmp_path, TINY_CFG, names, progress=False)
    assert list(dirs) == names and all((d / "adapter_model.safetensors").is_file() for d in dirs.values())
    stamp = {n: (d / "training.json").stat().st_mtime_ns for n, d in dirs.items()}
    assert train_experts(TINY, tmp_path, TINY_CFG, names, progress=False) == dirs
    assert {n: (d / "training.json").stat().st_mtime_ns for n, d in dirs.items()} == stamp
    merged = json.loads((dirs[DATA_MERGE] / "training.json").read_text())["rows"]
    used = {r for n in ("cot", "lima") for r in json.loads((dirs[n] / "training.json").read_text())["rows"]}
    assert len(merged) == 6 and {r for r in merged if r.split(":")[0] in ("cot", "lima")} <= used
    changed = ExpertConfig(**{**TINY_CFG.to_dict(), "seed": 9})
    train_experts(TINY, tmp_path, changed, ["cot"], progress=False)
    assert (dirs["cot"] / "training.json").stat().st_mtime_ns != stamp["cot"]
    assert json.loads((dirs["cot"] / "training.json").read_text())["config"]["seed"] == 9
    with pytest.raises(KeyError, match="unknown expert"):
        train_experts(TINY, tmp_path, TINY_CFG, ["nope"], progress=False)


# --- finding experts ----------------------------------------------------------------------------

def test_expert_dirs(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("GENOME_NB_CACHE", str(tmp_path / "cache"))
    assert experts_root(TINY) == tmp_path / "cache" / "experts" / TINY
    assert expert_pools._slug("google/gemma-2-2b-it") == "google--gemma-2-2b-it"
    with pytest.raises(FileNotFoundError, match="not built"):
        expert_dirs("built", base=TINY)
    for n in ("lima", "cot"):
        train_expert(tiny, _examples(), experts_root(TINY) / n, TINY_CFG, progress=False)
    assert expert_dirs("built", base=TINY, names=["cot", "lima"]) == {n: experts_root(TINY) / n for n in ("cot", "lima")}
    assert list(expert_dirs(experts_root(TINY))) == ["cot", "lima"]  # Table 8 order
    assert expert_dirs(str(experts_root(TINY) / "lima")) == {"lima": experts_root(TINY) / "lima"}
    assert list(expert_dirs([str(experts_root(TINY) / "lima")])) == ["lima"]
    with pytest.raises(FileNotFoundError, match="holds no PEFT adapter"):
        expert_dirs(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expert_dirs(tmp_path / "nowhere")


@needs_data
def test_cli_trains_and_plans(tmp_path, capsys):
    args = ["--base", TINY, "--names", "sharegpt", "--out", str(tmp_path), "--max-examples", "4", "--batch-size", "2",
            "--max-seq-len", "64", "--seed", "3", "--quiet"]
    assert build_experts_main(args) == 0
    info = json.loads((tmp_path / "sharegpt" / "training.json").read_text())
    assert info["examples"] == 4 and info["steps"] == 2 and info["config"]["seed"] == 3
    assert "sharegpt" in capsys.readouterr().out
    assert build_experts_main(args[:4] + ["--plan", "--max-examples", "32", "--tokens-per-s", "100"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "sharegpt" in out


def test_cpu_profile_modes_follow_the_committed_validation_evidence():
    "The cpu profile's targets and modes are what choose_modes picks from results/cpu/experts/modes.csv (validation only)."
    import pandas as pd
    from genome_nb.profiles import CPU_MODES, CPU_TASKS, PROFILES
    from genome_nb.expert_pools import choose_modes
    table = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "cpu" / "experts" / "modes.csv")
    chosen = choose_modes(table)
    assert {t for t, m in chosen.items() if m} == set(CPU_TASKS)
    assert {t: chosen[t] for t in CPU_TASKS} == CPU_MODES == PROFILES["cpu"].mode
    assert "test" not in set(table.columns) and (table.n == 200).all()   # validation rows only, the paper's 200
