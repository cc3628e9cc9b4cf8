"Base-model loading: the tiny random Llama for tests and the embedded SmolLM2-135M-Instruct."
import pytest
import torch

from genome_nb.models import EMBEDDED, chat, embedded_dir, load_base, resolve_dtype


def test_tiny_random_forward_is_finite_and_deterministic():
    model, tok = load_base("tiny-random")
    enc = tok(["The quick brown fox", "jumps"], return_tensors="pt", padding=True)
    logits = model(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    again, _ = load_base("tiny-random")
    assert torch.equal(again(**enc).logits, logits)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64


def test_tiny_random_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_base("tiny-random")
    assert torch.equal(torch.rand(3), expected)


def test_bad_names_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_base(str(tmp_path))
    with pytest.raises(ValueError, match="dtype='int3'"):
        resolve_dtype("int3")


def test_embedded_model_answers_paris():
    "Smoke test on the real embedded model: greedy decoding knows the capital of France."
    model, tok = load_base(EMBEDDED)
    assert (embedded_dir() / "genome_nb.json").is_file()
    assert model.config.num_hidden_layers == 30
    (answer,) = chat(model, tok, ["What is the capital of France?"], max_new_tokens=20)
    assert "paris" in answer.lower(), answer
