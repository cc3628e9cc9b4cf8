"Log-probability scoring modes in the Evaluator (S1): option texts, length normalisation, calibration, validation draws."
import math

import pytest
import torch

from genome_nb.engines import HFEngine
from genome_nb.fitness import Evaluator, MODES
from genome_nb.models import load_base
from genome_nb.tasks import LOGPROB_MODES, SCORING, get_task, make_toy_task, option_scores


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    model, tok = load_base("tiny-random")
    return HFEngine(model, tok, batch_tokens=512)


def test_every_logprob_mode_is_an_evaluator_mode():
    assert set(LOGPROB_MODES) <= set(MODES) and "generate" in MODES and set(SCORING) == set(LOGPROB_MODES)


@pytest.mark.parametrize("mode", LOGPROB_MODES)
def test_modes_predict_letters_from_their_own_scores(engine, mode):
    task = make_toy_task(6, seed=1, name="toy_modes")
    ev = Evaluator(engine, mode=mode)
    ts = ev.evaluate([None], [task], "validation").scores[0][task.name]
    exs = task.examples("validation")
    assert ts.mode == mode and len(ts.predictions) == len(exs)
    assert all(p in task.choice_labels(e) for p, e in zip(ts.predictions, exs))
    for p, sc, e in zip(ts.predictions, ts.outputs, exs):   # the prediction is the argmax of the recorded scores
        assert len(sc) == len(e.options) and p == "ABCD"[max(range(len(sc)), key=lambda j: sc[j])]
    assert ts.score == pytest.approx(sum(p == e.reference for p, e in zip(ts.predictions, exs)) / len(exs))


def test_calibrated_scores_subtract_the_content_free_prior(engine):
    task = make_toy_task(4, seed=2, name="toy_cal")
    exs = task.examples("validation")
    ev = Evaluator(engine, mode="cloze_calibrated")
    got = ev.evaluate([None], [task], "validation").scores[0][task.name].outputs
    render = lambda e: engine.render(task.user_message(e, "cloze"), task.choice_prefix)
    labels = [list(e.options) for e in exs]
    lp = engine.score_choices([None], [render(e) for e in exs], labels)[0]
    null = engine.score_choices([None], [render(task.content_free(e)) for e in exs], labels)[0]
    for g, a, b in zip(got, lp, null):
        assert g == pytest.approx([x - y for x, y in zip(a, b)], abs=1e-5)
    plain = Evaluator(engine, mode="cloze").evaluate([None], [task], "validation").scores[0][task.name].outputs
    flat = lambda xs: [v for row in xs for v in row]
    assert flat(plain) == pytest.approx(flat(lp), abs=1e-5) and flat(plain) != pytest.approx(flat(got), abs=1e-3)


def test_norm_divides_by_option_characters(engine):
    task = make_toy_task(4, seed=3, name="toy_norm")
    s = Evaluator(engine, mode="option").evaluate([None], [task], "validation").scores[0][task.name]
    n = Evaluator(engine, mode="option_norm").evaluate([None], [task], "validation").scores[0][task.name]
    for e, a, b in zip(task.examples("validation"), s.outputs, n.outputs):
        assert b == pytest.approx([x / len(o) for x, o in zip(a, e.options)])


def test_cache_keys_keep_modes_and_draws_apart(engine):
    task = make_toy_task(4, seed=0, name="toy_keys")
    keys = {Evaluator(engine, mode=m).key("g", task, "validation") for m in LOGPROB_MODES}
    assert len(keys) == len(LOGPROB_MODES)
    a, b = Evaluator(engine, val_draw=41), Evaluator(engine, val_draw=42)
    assert a.key("g", task, "validation") != b.key("g", task, "validation")
    assert a.key("g", task, "test") == b.key("g", task, "test")        # the test split does not depend on the draw
    with pytest.raises(ValueError, match="val_draw"):
        Evaluator(engine, val_draw=-1)


def test_a_mode_the_task_lacks_is_refused(engine):
    with pytest.raises(ValueError, match="no scoring mode 'cloze'"):
        Evaluator(engine, mode="cloze").mode_for(get_task("sensemaking"))
