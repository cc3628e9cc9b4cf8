"HFEngine.score_choices: contexts run once, labels of several tokens scored on the context's key/value cache."
import random

import pytest
import torch

from genome_nb.engines import HFEngine, build_rows, split_candidates
from genome_nb.models import load_base, load_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return load_base("tiny-random", dtype="fp32")


@torch.inference_mode()
def reference(model, tok, texts, labels):
    "Each text + label scored by one plain full forward, no cache, no batching."
    ctxs, labs = split_candidates(tok, texts, labels)
    out = []
    for c, ls in zip(ctxs, labs):
        row = []
        for l in ls:
            lp = torch.log_softmax(model(input_ids=torch.tensor([c + l])).logits[0].float(), -1)
            row.append(sum(lp[len(c) - 1 + k, t].item() for k, t in enumerate(l)))
        out.append(row)
    return out


def _max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def _case(tok, seed=0, n=11, prefix=""):
    "Texts of mixed lengths and labels of 1 to 5 tokens (some texts with single-token labels only)."
    rng = random.Random(seed)
    words = "the cat sat on a mat and then ran far away quickly because dogs bark loud at night".split()
    texts = [prefix + " ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) + rng.choice([": ", "\n", " ", ""])
             for _ in range(n)]
    labels = []
    for i in range(n):
        if i % 4 == 3: labels.append(["A", "B", "C"])       # single-token labels next to multi-token ones
        else: labels.append([" ".join(rng.choice(words) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(2, 5))])
    return texts, labels


@pytest.mark.parametrize("prefix", ["", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"])
@pytest.mark.parametrize("budget", [dict(batch_tokens=48, max_batch=3), dict(batch_tokens=4096, max_batch=64, max_waste=1.0)])
def test_matches_plain_forward(tiny, prefix, budget):
    base, tok = tiny
    texts, labels = _case(tok, seed=len(prefix), prefix=prefix)
    ctxs, labs = split_candidates(tok, texts, labels)
    assert {len(l) for ls in labs for l in ls} >= {1, 2, 3, 4, 5}
    assert len({len(c) for c in ctxs}) > 3
    eng = HFEngine(base, tok, **budget)
    ours = eng.score_choices([None], texts, labels)[0]
    ref = reference(base, tok, texts, labels)
    d = _max_diff(ours, ref)
    assert d <= 1e-4, d
    s = eng.stats
    if budget["batch_tokens"] < 100: assert s.batches > 5          # several context and option batches
    else: assert s.tokens_padded > 0                                # mixed-length contexts in one batch: the mask matters
    assert s.tokens_naive == sum(len(ids) for ids, _ in build_rows(ctxs, labs))
    P = 0
    if prefix:
        from genome_nb.engines import common_prefix_len
        P = min(common_prefix_len(ctxs), min(len(c) for c in ctxs) - 1)
        assert P > 5
    # each context once (the shared prefix once), then each option's tokens after the first
    assert s.tokens_computed == P + sum(len(c) - P for c in ctxs) + sum(len(l) - 1 for ls in labs for l in ls if len(l) > 1)


def test_single_token_fast_path(tiny):
    base, tok = tiny
    texts = [f"Question {i}: " + "word " * i + "Answer:" for i in range(1, 6)]
    labels = [[" A", " B", " C", " D"]] * 5
    eng = HFEngine(base, tok, batch_tokens=64, max_batch=2)
    ours = eng.score_choices([None], texts, labels)[0]
    assert _max_diff(ours, reference(base, tok, texts, labels)) <= 1e-4
    from genome_nb.engines import common_prefix_len, length_batches
    ctxs, _ = split_candidates(tok, texts, labels)
    P = min(common_prefix_len(ctxs), min(len(c) for c in ctxs) - 1)
    assert eng.stats.tokens_naive == sum(len(c) for c in ctxs)
    assert eng.stats.tokens_computed == P + sum(len(c) - P for c in ctxs)   # no option rows at all
    assert eng.stats.batches == len(length_batches([len(c) - P for c in ctxs], 64, 2, eng.max_waste))


def test_genome_applied(tiny):
    import copy
    from genome_nb.genome import LoraSpec, genome_from_model, random_lora_model
    base, tok = tiny
    spec = LoraSpec(base_model="tiny-random", r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
    peft = random_lora_model(copy.deepcopy(base), spec, seed=3, scale=0.5)
    g = genome_from_model(peft)
    texts, labels = _case(tok, seed=5, n=6, prefix="Shared instruction: pick one. ")
    eng = HFEngine(base, tok, batch_tokens=64, max_batch=4)
    ours = eng.score_choices([g, None], texts, labels)
    assert _max_diff(ours[0], reference(peft, tok, texts, labels)) <= 1e-4
    assert _max_diff(ours[1], reference(base, tok, texts, labels)) <= 1e-4


def _smollm_tokenizer():
    try: return load_tokenizer()
    except Exception as e: pytest.skip(f"the SmolLM2 tokenizer is not available offline ({type(e).__name__}: {e})")


@pytest.mark.parametrize("label", ["Neutral", " Neutral"])
def test_answer_label_tokens_are_the_models_own(label):
    tok = _smollm_tokenizer()
    ctxs, labs = split_candidates(tok, ["Answer: "], [[label]])
    want = tok("Answer: Neutral", add_special_tokens=False)["input_ids"]
    assert ctxs[0] + labs[0][0] == want
    assert tok.convert_ids_to_tokens(ctxs[0]) == ["Answer", ":"]
    assert tok.convert_ids_to_tokens(labs[0][0]) == ["ĠNeutral"]


def test_rendered_prompt_scores_the_joint_tokens(tiny):
    "Through the engine: 'Answer: ' + 'Neutral' is scored as the tokens of '...Answer: Neutral' (tiny model, real tokenizer)."
    base, tok = tiny
    eng = HFEngine(base, tok)
    texts = [eng.render(f"How does speaker {i} feel?", "Answer: ") for i in range(3)]
    labels = [["Neutral", " Neutral", "remain the same"]] * 3
    ctxs, labs = split_candidates(tok, texts, labels)
    for t, c, ls in zip(texts, ctxs, labs):
        for l, ids in zip(labels[0], ls):
            assert c + ids == tok(t + l.lstrip(), add_special_tokens=False)["input_ids"]
    ours = eng.score_choices([None], texts, labels)[0]
    for t, row in zip(texts, ours):
        full = tok(t + "Neutral", add_special_tokens=False)["input_ids"]
        n = len(tok(t.rstrip(), add_special_tokens=False)["input_ids"])
        with torch.inference_mode():
            lp = torch.log_softmax(base(input_ids=torch.tensor([full])).logits[0].float(), -1)
        want = sum(lp[k - 1, full[k]].item() for k in range(n, len(full)))
        assert abs(row[0] - want) <= 1e-4 and abs(row[1] - want) <= 1e-4


@pytest.mark.parametrize("max_row", [8, 1024])
def test_many_labels_packed_rows(tiny, max_row):
    "A context with many multi-token labels: all in one packed row, or split over several when `max_row` is small."
    base, tok = tiny
    rng = random.Random(7)
    words = "red green blue light dark shade of a the very".split()
    texts = ["Shared instruction: choose. Which colour is it?\nAnswer: ", "Shared instruction: choose. And this one? "]
    labels = [[" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(30)] for _ in texts]
    eng = HFEngine(base, tok, max_row=max_row)
    ours = eng.score_choices([None], texts, labels)[0]
    assert _max_diff(ours, reference(base, tok, texts, labels)) <= 1e-4
    from genome_nb.engines import pack_units
    ctxs, labs = split_candidates(tok, texts, labels)
    units = pack_units([len(c) for c in ctxs], labs, max_row)
    assert (len(units) == 2) == (max_row == 1024) and len(units) >= 2
    assert sorted((i, j) for i, js in units for j in js) == [(i, j) for i in range(2) for j in range(30)]
