"Tasks: the paper's prompts word for word, answer extraction tables, metrics on hand-computed cases."
import re
from dataclasses import replace
from pathlib import Path

import dataclasses

import pytest

from genome_nb import data as D, splits as S
from genome_nb.data import DATASETS, Example
from genome_nb.splits import register_examples
from genome_nb.tasks import FIGURES, FIGURE_NUMBERS, TASKS, Task, get_task, make_toy_task, register_task
from genome_nb.answers import corpus_bleu, drop_score, extract_code, find_answer, normalize_math

try:
    RAW = D.raw_dir()
    HAVE_DATA = (RAW / "mmlu" / "test.parquet").is_file()
except FileNotFoundError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="benchmark data not found (set GENOME_DATA_DIR)")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    "Real splits for seed 0, built once into a temporary GENOME_SPLITS_DIR (a few seconds)."
    root = tmp_path_factory.mktemp("splits")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENOME_SPLITS_DIR", str(root))
    S.build_splits(seed=0)
    yield root
    mp.undo()


# ---------------------------------------------------------------- the paper's figures

def _paper() -> Path | None:
    try:
        seeds = D.data_dir().parent / "seeds"
    except FileNotFoundError:
        return None
    hits = sorted(seeds.glob("001_*.txt")) if seeds.is_dir() else []
    return hits[0] if hits else None


def figure_text(n: int) -> str:
    "Body of Figure n of the paper's text copy, with Markdown escapes and extraction damage undone."
    lines = _paper().read_text(encoding="utf-8").split("\n")
    cap = next(i for i, l in enumerate(lines) if l.startswith(f"Figure {n}: The prompt of"))
    if n == 4:
        start = next(i for i in range(cap, 0, -1) if lines[i].startswith("²https://github.com/openai/simple-evals"))
    else:
        start = next(i for i in range(cap - 1, 0, -1) if lines[i].startswith(f"Figure {n - 1}: The prompt of"))
    body = [l for l in lines[start + 1:cap] if not re.fullmatch(r"[\d\s]*", l)]
    body = body[1:]                                   # the figure's title (e.g. "MMLU", "GSM8K / MATH")
    text = "\n".join(body).replace("\\$", "$").replace("\\\\", "\\").replace("**", "")
    text = re.sub(r"^- ", "", text, flags=re.M)       # list markers added by the extraction
    if n == 4:                                        # the option lines came through damaged: restore the A line
        text = text.replace("B) {B} C) {C}\nD) {D}", "A) {A}\nB) {B}\nC) {C}\nD) {D}")
    return text


def _words(s: str) -> str:
    return " ".join(s.split())


@pytest.mark.skipif(_paper() is None, reason="the paper's text copy (shared/seeds) is not available")
@pytest.mark.parametrize("key", sorted(FIGURES))
def test_templates_are_the_figures_word_for_word(key):
    assert _words(FIGURES[key]) == _words(figure_text(FIGURE_NUMBERS[key]))


def _figure_regex(n: int) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", figure_text(n))
    rx = ""
    for p in parts:
        if re.fullmatch(r"\{\w+\}", p):
            rx += r"(.+?)"
        else:
            rx += r"\s*".join(re.escape(w) for w in p.split()) if p.strip() else ""
            rx += r"\s*"
    return re.compile(r"\s*" + rx + r"\s*", re.S)


@needs_data
@pytest.mark.skipif(_paper() is None, reason="the paper's text copy (shared/seeds) is not available")
@pytest.mark.parametrize("name", DATASETS)
def test_prompt_for_a_real_example_matches_the_figure(name, splits):
    task = get_task(name)
    ex = task.examples("validation", n=1)[0]
    prompt = task.prompt(ex, task.shots(ex, "validation"))
    assert _figure_regex(task.figure).fullmatch(prompt), prompt[:500]
    for field in ("question", "sentence", "utterance", "text", "context"):
        if field in ex.inputs: assert ex.inputs[field] in prompt
    if task.template.endswith("Let's think step by step."): assert prompt.endswith("Let's think step by step.")
    if ex.options: assert all(f"{'ABCDEFGHIJ'[i]}) {o}" in prompt for i, o in enumerate(ex.options))


@needs_data
def test_few_shot_prompts_hold_three_examples_from_the_pool(splits):
    for name in ("bbh", "flores37", "flores101"):
        task = get_task(name)
        for split in ("validation", "test"):
            ex = task.examples(split, n=3)[2]
            shots = task.shots(ex, split)
            assert len(shots) == 3 and task.shots(ex, split) == shots             # deterministic
            scored = {e.id for s in ("validation", "test") for e in task.examples(s)}
            assert not {s.id for s in shots} & scored
            p = task.prompt(ex)
            assert p == task.prompt(ex, shots)
            marker = "Answer: " if name == "bbh" else "Translation: "
            assert p.count("\n" + marker) == 3 + task.template.count("\n" + marker)
            assert all(str(s.reference) in p for s in shots)
    for name in DATASETS:
        if name not in ("bbh", "flores37", "flores101"):
            t = get_task(name)
            assert t.n_shots == 0 and t.shots(Example("x", {}, "A")) == []


# ---------------------------------------------------------------- registry and contract

def test_registry_and_contract():
    assert tuple(TASKS)[:len(DATASETS)] == DATASETS
    with pytest.raises(ValueError, match="valid names: mmlu, mmlu_pro"):
        get_task("MMLU")
    metrics = {t.metric for t in TASKS.values()}
    assert metrics <= {"accuracy", "exact_match", "bleu", "pass@1"}
    option = ("option", "option_norm", "option_calibrated")
    cloze = ("cloze", "cloze_norm", "cloze_calibrated")
    for name in ("mmlu", "mmlu_pro", "arc_c", "csqa", "emorynlp", "meld", "mmlu_pro_reasoning"):
        assert get_task(name).modes == ("choice", *option, *cloze, "generate") and get_task(name).choice_prefix == "Answer: "
    for name in ("strategyqa", "creak", "qasc", "aqua", "codah"):
        assert get_task(name).modes == ("choice", *option, *cloze, "generate") and get_task(name).figure is None
    assert get_task("sensemaking").modes == ("choice", *option, "generate")   # no cloze: it asks for the sentence that makes no sense
    for name in ("gsm8k", "math", "mgsm", "flores37", "flores101", "bbh", "drop", "mbpp"):
        assert get_task(name).modes == ("generate",)
        with pytest.raises(ValueError, match="no choice mode"):
            get_task(name).choice_labels(Example("x", {}, "1"))
    assert get_task("drop").metric == "exact_match" and get_task("mbpp").metric == "pass@1"
    assert get_task("flores37").metric == "bleu"


def test_choice_labels_follow_the_options():
    t = get_task("mmlu_pro")
    ex = Example("p/1", {"question": "q", "subject": "law"}, "F", tuple(f"o{i}" for i in range(7)))
    assert t.choice_labels(ex) == list("ABCDEFG") and t.gold(ex) == "F"
    assert "LETTER is one of ABCDEFG." in t.prompt(ex)
    emo = get_task("meld")
    ex = Example("m/1", {"history": "", "utterance": "Joey: Hi"}, "D", D.MELD_LABELS)
    assert emo.choice_labels(ex) == list("ABCDEFG") and emo.extract("Answer: joy", ex) == "D"


# ---------------------------------------------------------------- extraction tables (>= 10 cases each)

MC = Example("mc/1", {"question": "q", "subject": "s"}, "B", ("Paris", "London", "Rome", "Berlin"))
MC_TABLE = [
    ("Reasoning...\nAnswer: B", "B"),
    ("**Answer:** C", "C"),
    ("Answer: (D)", "D"),
    ("Answer: A) Paris", "A"),
    ("answer: b", "B"),
    ("Answer: $B$", "B"),
    ("Answer: \\boxed{C}", "C"),
    ("Answer:\n\nD", "D"),
    ("Answer: London", "B"),                       # the option's text
    ("Answer: A\nOn reflection...\nAnswer: C", "C"),  # the last answer line wins
    ("Final Answer: A", "A"),
    ("The answer is B", None),                     # no "Answer:" line
    ("Answer: $LETTER", None),                     # the template echoed
    ("Answer: E", None),                           # not an option
    ("Answer: a cat", None),
    ("", None),
    ("Answer: I am not sure", None),
]


@pytest.mark.parametrize("name", ["mmlu", "arc_c", "csqa", "mmlu_pro"])
@pytest.mark.parametrize("text,want", MC_TABLE)
def test_letter_extraction(name, text, want):
    assert get_task(name).extract(text, MC) == want


def test_emotion_extraction_table():
    ex = Example("e/1", {"history": "", "utterance": "A: hi"}, "C", D.EMORYNLP_LABELS)
    t = get_task("emorynlp")
    table = [("Answer: C", "C"), ("Answer: G", "G"), ("Answer: Neutral", "C"), ("Answer: (F) Sad", "F"),
             ("**Answer: A**", "A"), ("answer: g", "G"), ("Answer: H", None), ("The emotion is Mad", None),
             ("Answer: happy", None), ("Answer:", None), ("Answer: Mad.", "B")]
    for text, want in table:
        assert t.extract(text, ex) == want, text


NUM_TABLE = [
    ("... so she earns 18 dollars.\nAnswer: 18", "18"),
    ("Answer: $18.00", "18"),
    ("Answer: 1,234", "1234"),
    ("Answer: 9 * 2 = 18", "18"),
    ("Answer: 18 (9 eggs × $2)", "18"),
    ("**Answer:** 42", "42"),
    ("Answer: -5 degrees", "-5"),
    ("Answer: 0.50", "0.5"),
    ("Answer: \\boxed{7}", "7"),
    ("Answer: 25%", "25"),
    ("Answer: ১৮", "18"),
    ("The answer is 18", None),
    ("Answer: eighteen", None),
    ("Answer: x", None),
    ("", None),
]


@pytest.mark.parametrize("name", ["gsm8k", "mgsm"])
@pytest.mark.parametrize("text,want", NUM_TABLE)
def test_number_extraction(name, text, want):
    assert get_task(name).extract(text) == want


MATH_TABLE = [
    ("Answer: \\frac{1}{2}", "\\frac{1}{2}", True),
    ("Answer: 0.5", "\\frac{1}{2}", True),
    ("Answer: $\\dfrac{1}{2}$", "\\frac12", True),
    ("Answer: 1/2", "\\frac{1}{2}", True),
    ("so the result is \\boxed{\\sqrt{3}}", "\\sqrt{3}", True),    # no Answer line: the last \boxed{}
    ("Answer: 90^\\circ", "90", True),
    ("Answer: 10\\%", "10", True),
    ("Answer: \\left(2, 3\\right)", "(2,3)", True),
    ("Answer: x = 5", "5", True),
    ("Answer: 5\\text{ cm}", "5", True),
    ("Answer: 1,000", "1000", True),
    ("Answer: 4.0", "4", True),
    ("Answer: \\frac{1}{3}", "0.33", False),
    ("Answer: (2, 3)", "(3,2)", False),
    ("Answer: 2\\sqrt{2}", "\\sqrt{8}", False),   # not simplified symbolically: a known limit
    ("I do not know", "5", False),
]


@pytest.mark.parametrize("text,gold,same", MATH_TABLE)
def test_math_extraction(text, gold, same):
    t = get_task("math")
    ex = Example("m/1", {"question": "q"}, gold)
    got = t.extract(text, ex)
    assert (got is not None and got == t.gold(ex)) == same
    assert t.score([got], [ex])["accuracy"] == float(same)


def test_math_normalisation_is_idempotent():
    for s in ["\\frac{1}{3}", "0.5", "(1,2)", "\\sqrt{2}", "x^2+1", "-\\frac{3}{4}", "10", "\\text{(C)}"]:
        assert normalize_math(normalize_math(s)) == normalize_math(s)


def _bbh(sub, target, question="Q?"):
    return Example(f"bbh/{sub}/0", {"question": question}, target, None, {"subtask": sub})


BBH_TABLE = [
    (_bbh("date_understanding", "(B)", "Q\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937"), "Answer: B", True),
    (_bbh("date_understanding", "(B)", "Q\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937"), "Answer: (B)", True),
    (_bbh("date_understanding", "(B)", "Q\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937"), "Answer: 12/25/1937", True),
    (_bbh("date_understanding", "(B)", "Q\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937"), "Answer: (A)", False),
    (_bbh("boolean_expressions", "True"), "Answer: true", True),
    (_bbh("boolean_expressions", "True"), "Answer: False", False),
    (_bbh("sports_understanding", "yes"), "Answer: Yes.", True),
    (_bbh("navigate", "No"), "Answer: no", True),
    (_bbh("formal_fallacies", "invalid"), "Answer: valid", False),
    (_bbh("object_counting", "8"), "Answer: 8 objects", True),
    (_bbh("multistep_arithmetic_two", "-24"), "Answer: -24", True),
    (_bbh("dyck_languages", "] ] )"), "Answer: ]])", True),
    (_bbh("word_sorting", "apple banana cherry"), "Answer: apple, banana, cherry", True),
    (_bbh("word_sorting", "apple banana cherry"), "Answer: banana apple cherry", False),
    (_bbh("movie_recommendation", "Monsters, Inc"), "Answer: monsters, inc", True),
    (_bbh("web_of_lies", "Yes"), "The answer is Yes", False),      # no answer line
]


@pytest.mark.parametrize("ex,text,same", BBH_TABLE)
def test_bbh_extraction(ex, text, same):
    t = get_task("bbh")
    got = t.extract(text, ex)
    assert (got is not None and got == t.gold(ex)) == same
    assert t.score([t.extract(text)], [ex])["accuracy"] == float(same)   # extract without ex, normalised in score


DROP_TABLE = [
    ("Answer: 2", ["2"], 1.0, 1.0),
    ("Answer: 2.0", ["2"], 1.0, 1.0),
    ("Answer: two", ["2"], 0.0, 0.0),
    ("Answer: the Raiders", ["Raiders"], 1.0, 1.0),
    ("Answer: Raiders.", ["Raiders"], 1.0, 1.0),
    ("**Answer:** Tom Brady", ["Brady"], 0.0, 2 / 3),
    ("Answer: Brady", ["Tom Brady"], 0.0, 2 / 3),
    ("Answer: 24 yards", ["25"], 0.0, 0.0),
    ("Answer: Pakistani and Filipino", ["Pakistanis and Filipinos", "Pakistani and Filipino"], 1.0, 1.0),
    ("Answer: 1,200", ["1200"], 1.0, 1.0),        # "1,200" loses its comma (punctuation), then reads as the number 1200
    ("no answer line", ["2"], 0.0, 0.0),
    ("Answer: second-half", ["second half"], 1.0, 1.0),
]


@pytest.mark.parametrize("text,answers,em,f1", DROP_TABLE)
def test_drop_extraction_and_official_metrics(text, answers, em, f1):
    t = get_task("drop")
    ex = Example("d/1", {"context": "c"}, answers)
    pred = t.extract(text, ex)
    r = t.score([pred], [ex])
    assert r["exact_match"] == em and r["f1"] == pytest.approx(f1, abs=1e-3)


FLORES_TABLE = [
    ("Translation: Hallo Welt.", "Hallo Welt."),
    ("Sure!\nTranslation: Hallo Welt.", "Hallo Welt."),
    ("Translation:\nHallo Welt.", "Hallo Welt."),
    ("**Translation:** Hallo Welt.", "Hallo Welt."),
    ('Translation: "Hallo Welt."', '"Hallo Welt."'),   # quotes kept: FLORES references can be quotations
    ("translation: hallo", "hallo"),
    ("Translation: A\nTranslation: B", "B"),
    ("Translation: 你好，世界。", "你好，世界。"),
    ("Hallo Welt.", None),              # no "Translation:" line: unparseable, scored as empty output
    ("", None),
    ("Translation:", None),
]


@pytest.mark.parametrize("text,want", FLORES_TABLE)
def test_translation_extraction(text, want):
    assert get_task("flores37").extract(text) == want


CODE_TABLE = [
    ("```python\ndef f(x):\n    return x\n```", "def f(x):\n    return x\n"),
    ("Here you go:\n```python\ndef f(x):\n    return x\n```\nExample:\n```python\nprint(f(2))\n```", "def f(x):\n    return x\n"),
    ("```\nimport math\ndef f(x):\n    return math.sqrt(x)\n```", "import math\ndef f(x):\n    return math.sqrt(x)\n"),
    ("```py\ndef f(x): return x\n```", "def f(x): return x\n"),
    ("```python\ndef f(x):\n    return x\n", "def f(x):\n    return x\n"),      # unclosed fence
    ("def f(x):\n    return x\n\nThis returns x.", "def f(x):\n    return x\n"),
    ("```python\nprint(1)\n```\n```python\ndef g(): pass\n```", "def g(): pass\n"),
    ("I cannot help with that.", None),
    ("```python\ndef f(:\n```", None),
    ("", None),
    ("```python\n\n```", None),
]


@pytest.mark.parametrize("text,want", CODE_TABLE)
def test_code_extraction(text, want):
    assert get_task("mbpp").extract(text) == want == extract_code(text)


def test_find_answer_rules():
    assert find_answer("Answer: A\nmore text\nAnswer: B\nthanks") == "B"
    assert find_answer("answer : 3") == "3"
    assert find_answer("ANSWER：C") == "C"              # full-width colon
    assert find_answer("No marker here") is None
    assert find_answer(None) is None


# ---------------------------------------------------------------- metrics on hand-computed cases

def test_accuracy_counts_unparseable_as_wrong():
    t = get_task("csqa")
    exs = [Example(f"c/{i}", {"question": "q", "question_concept": "c"}, g, tuple("vwxyz")) for i, g in enumerate("ABCDE")]
    r = t.score(["A", "B", None, "E", "E"], exs)
    assert r["accuracy"] == pytest.approx(3 / 5) and r["per_example"] == [1, 1, 0, 0, 1] and r["unparsed"] == 0.2
    with pytest.raises(ValueError, match="3 predictions for 5 examples"):
        t.score(["A", "B", "C"], exs)


def test_bleu_on_hand_computed_cases():
    # identical output: 100; empty or missing output: 0
    assert corpus_bleu(["abc def"], ["abc def"]) == pytest.approx(100)
    assert corpus_bleu([None], ["abc"]) == 0
    # character BLEU is BLEU over space-separated characters
    import sacrebleu
    want = sacrebleu.corpus_bleu(["a b c d"], [["a b c e"]], tokenize="none").score
    assert corpus_bleu(["abcd"], ["abce"]) == pytest.approx(want)
    t = get_task("flores37")
    exs = [Example("f/deu/1", {"sentence": "s", "language": "German", "lang": "deu"}, "Hallo Welt", None, {"language": "deu"}),
           Example("f/jpn/1", {"sentence": "s", "language": "Japanese", "lang": "jpn"}, "こんにちは", None, {"language": "jpn"})]
    r = t.score(["Hallo Welt", None], exs)
    assert r["bleu/deu"] == pytest.approx(100) and r["bleu/jpn"] == 0 and r["per_example"][1] == 0
    assert 0 < r["bleu"] < 100 and r["tokenize"] == "char" and r["unparsed"] == 0.5


def test_drop_scores_take_the_best_answer():
    assert drop_score("2", ["two", "2"]) == (1.0, 1.0)
    assert drop_score(None, ["2"]) == (0.0, 0.0)


def test_pass_at_1_runs_the_tests_in_the_sandbox():
    t = get_task("mbpp")
    ex = Example("mbpp/x", {"text": "add", "tests": ["assert add(1, 2) == 3"], "test_setup_code": ""},
                 "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n", None, {"code": "def add(a, b):\n    return a + b"})
    r = t.score([t.gold(ex), "def add(a, b):\n    return 3", None, "def add(a, b):\n    while True: pass"],
                [ex] * 4)
    assert r["per_example"] == [1.0, 0.0, 0.0, 0.0] and r["pass@1"] == 0.25


@needs_data
def test_gold_answers_round_trip_through_extraction(splits):
    "For every validation example: an output that states the gold answer is scored correct."
    for name in DATASETS:
        t = get_task(name)
        exs = t.examples("validation", n=60)
        if name == "mbpp":
            continue                                   # covered by the sandbox test on all 974 solutions (slow)
        if name in ("flores37", "flores101"):
            preds = [t.extract(f"Translation: {e.reference}") for e in exs]
            assert t.score(preds, exs)["bleu"] == pytest.approx(100)
            continue
        if name == "drop":
            preds = [t.extract(f"Answer: {e.reference[0]}") for e in exs]
            assert t.score(preds, exs)["exact_match"] == 1.0
            continue
        preds = [t.extract(f"Let's think.\nAnswer: {t.gold(e)}", e) for e in exs]
        assert t.score(preds, exs)[t.metric] == 1.0, (name, [(p, t.gold(e)) for p, e in zip(preds, exs) if p != t.gold(e)][:3])
        if "choice" in t.modes:
            assert all(t.gold(e) in t.choice_labels(e) for e in exs)


@needs_data
def test_bbh_gold_round_trip_without_example(splits):
    t = get_task("bbh")
    exs = t.examples("test")
    preds = [t.extract(f"Answer: {e.reference}") for e in exs]     # extract without the example; score normalises
    assert t.score(preds, exs)["accuracy"] == 1.0


# ---------------------------------------------------------------- toy tasks for other modules' tests

def test_make_toy_task_is_deterministic_and_self_contained():
    t = make_toy_task(6, seed=3)
    assert get_task("toy") is t and isinstance(t, Task) and t.modes[0] == "choice" and t.modes[-1] == "generate"
    val, test = t.examples("validation"), t.examples("test")
    assert len(val) == len(test) == 6 and not {e.id for e in val} & {e.id for e in test}
    assert make_toy_task(6, seed=3).examples("validation") == val
    assert make_toy_task(6, seed=4).examples("validation") != val
    e = val[0]
    assert e.options[ord(t.gold(e)) - 65] == str(e.meta["sum"]) and t.choice_labels(e) == list("ABCD")
    assert t.score([t.gold(x) for x in val], val)["accuracy"] == 1.0
    assert t.extract("Answer: " + t.gold(e), e) == t.gold(e)
    assert f"What is" in t.prompt(e) and t.examples("validation", n=2) == val[:2]
    num = make_toy_task(4, seed=0, kind="number", name="toy_num")
    x = num.examples("test")[0]
    assert num.modes == ("generate",) and num.extract(f"Answer: {x.meta['sum']}") == num.gold(x)
    with pytest.raises(ValueError, match="kind must be"):
        make_toy_task(kind="essay")


def test_a_task_over_registered_examples():
    exs = [Example(f"my/{i}", {"question": f"2+{i}?"}, "A", (str(2 + i), "0")) for i in range(4)]
    register_examples("mydata", "validation", exs)
    t = register_task(replace(get_task("arc_c"), name="mine", dataset="mydata"))
    assert get_task("mine").examples("validation") == exs
    assert "LETTER is one of AB." in t.prompt(exs[0])
    assert t.score(["A", "B", None, "A"], exs)["accuracy"] == 0.5


# ---------------------------------------------------------------- log-probability modes (S1)

def test_option_modes_score_option_texts_and_read_letters():
    t = make_toy_task(4, seed=0)
    e = t.examples("validation")[0]
    assert t.labels(e, "choice") == list("ABCD") and t.labels(e, "option") == list(e.options)
    assert t.labels(e, "cloze_norm") == list(e.options)
    assert t.user_message(e, "option") == t.prompt(e)                 # the paper's prompt lists the options
    assert t.user_message(e, "cloze") == e.inputs["question"]         # the cloze prompt does not
    assert "N/A" in t.user_message(t.content_free(e), "cloze") and t.content_free(e).options == e.options
    assert e.inputs["question"] not in t.user_message(t.content_free(e), "option_calibrated")
    with pytest.raises(ValueError, match="no log-probability mode 'generate'"):
        t.labels(e, "generate")
    with pytest.raises(ValueError, match="no cloze prompt"):
        dataclasses.replace(t, cloze="").user_message(e, "cloze")


def test_emotion_content_free_prompt_blanks_history_and_utterance():
    t = get_task("emorynlp")
    e = Example("x", {"history": "A: hi", "utterance": "B: I hate this!"}, "B", ("Joyful", "Mad"), {})
    null = t.user_message(t.content_free(e), "cloze_calibrated")
    assert "hate" not in null and "A: hi" not in null and "joyful, mad" in null
    assert "I hate this!" in t.user_message(e, "cloze")
