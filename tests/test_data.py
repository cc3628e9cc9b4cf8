"Data invariants on the real benchmark files: split sizes, disjointness, determinism, manifest, errors."
import hashlib, json, shutil
from collections import Counter
from pathlib import Path

import pytest

from genome_nb import data as D, splits as S
from genome_nb.data import DATASETS, DataError, Example
from genome_nb.splits import build_splits, load_split, register_examples

try:
    RAW = D.raw_dir()
    HAVE_DATA = (RAW / "mmlu" / "test.parquet").is_file()
except FileNotFoundError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="benchmark data not found (set GENOME_DATA_DIR)")

# test sizes for seed 0 (DESIGN: 200 validation / <=1000 test; MGSM and FLORES keep all remaining data)
EXPECTED = {"mmlu": 1000, "mmlu_pro": 1000, "mmlu_pro_knowledge": 1000, "mmlu_pro_reasoning": 1000, "gsm8k": 1000,
            "math": 1000, "mgsm": 2541, "flores37": 800, "flores101": 800, "arc_c": 772, "csqa": 1000, "bbh": 1000,
            "drop": 1000, "emorynlp": 984, "meld": 1000, "mbpp": 774,
            "strategyqa": 830, "creak": 1000, "qasc": 342, "sensemaking": 1000, "aqua": 1000, "codah": 1000}
# pool sizes: 400, else the 200 validation examples (mgsm, flores, mbpp: test would shrink), else the official dev csv
# (less the few rows whose dialogue context is a copy of a test row)
POOL = {**{n: 400 for n in EXPECTED}, "mgsm": 200, "flores37": 200, "flores101": 200, "mbpp": 200,
        "emorynlp": 952, "meld": 1108}
TRAIN = {"gsm8k": 7073, "csqa": 9341, "emorynlp": 7529, "meld": 9976,
         "strategyqa": 831, "creak": 5515, "qasc": 342, "sensemaking": 4670, "aqua": 1328, "codah": 1371}
NEW = {"strategyqa": 2, "creak": 2, "qasc": 8, "sensemaking": 2, "aqua": 5, "codah": 4}   # options per question


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("splits")
    return out, build_splits(out_dir=out, seed=0)


def _ids(man, name, split):
    return man["datasets"][name]["splits"][split]["ids"]


def _load(out, name, split):
    return load_split(name, split, out_dir=out)


@needs_data
def test_split_sizes_match_the_paper_where_the_data_allows(built):
    _, man = built
    assert set(man["datasets"]) == set(D.ALL_DATASETS) and set(D.TARGET_DATASETS) == set(NEW)
    for name in D.ALL_DATASETS:
        e = man["datasets"][name]["splits"]
        assert e["validation"]["count"] == 200 == len(set(e["validation"]["ids"])), name
        assert e["test"]["count"] == EXPECTED[name] == len(set(e["test"]["ids"])), name
        assert e["test"]["count"] <= 1000 or name in ("mgsm",), name
        assert e["pool"]["count"] == POOL[name] == len(set(e["pool"]["ids"])), name
        assert e["validation"]["ids"] == e["pool"]["ids"][:200], name            # draw=None: the pool's first 200
        assert ("train" in e) == (name in TRAIN) and e.get("train", {}).get("count") == TRAIN.get(name), name
        assert man["datasets"][name]["sizes"] and man["datasets"][name]["note"], name


@needs_data
def test_train_pool_and_test_are_disjoint_including_groups(built):
    out, man = built
    for name in D.ALL_DATASETS:
        parts = {s: _load(out, name, s) for s in ("train", "pool", "test") if s in man["datasets"][name]["splits"]}
        assert {e.id for e in _load(out, name, "validation")} <= {e.id for e in parts["pool"]}, name
        for a in parts:
            for b in parts:
                if a >= b: continue
                assert not {e.id for e in parts[a]} & {e.id for e in parts[b]}, (name, a, b)
                ga, gb = ({str(e.meta.get("group", e.id)) for e in parts[x]} for x in (a, b))
                assert not ga & gb, f"{name}: a group (question/sentence/passage/dialogue) is in {a} and {b}"
                if name in S.OFFICIAL:   # official files: no copied question / dialogue context across them either
                    assert not {S.content_key(e) for e in parts[a]} & {S.content_key(e) for e in parts[b]}, (name, a, b)


@needs_data
def test_official_splits_come_from_their_files(built):
    out, man = built
    for name, (t, p, tr) in S.OFFICIAL.items():
        assert all(e.id.split("/")[1] == t or name == "csqa" for e in _load(out, name, "test")), name
        if name in ("emorynlp", "meld", "gsm8k", "mmlu"):
            assert all(e.id.split("/")[1] == p for e in _load(out, name, "pool")), name
        if tr and name != "csqa": assert all(e.id.split("/")[1] == tr for e in _load(out, name, "train")), name
    assert {e.meta["file"] for e in _load(out, "csqa", "test")} == {"dev"}
    assert {e.meta["file"] for s in ("pool", "train") for e in _load(out, "csqa", s)} == {"train"}
    meld = {e.meta["group"].split("/")[0] for s in ("train", "pool", "test") for e in _load(out, "meld", s)}
    assert meld == {"train", "dev", "test"}                       # MELD's Dialogue_ID restarts: groups are split-qualified
    assert man["datasets"]["meld"]["dropped_copies"] and man["datasets"]["emorynlp"]["dropped_copies"]


@needs_data
def test_validation_draws(built):
    out, _ = built
    for name in ("qasc", "gsm8k", "meld", "bbh"):
        pool = _load(out, name, "pool")
        a, b = (load_split(name, "validation", out_dir=out, draw=k) for k in (1, 2))
        assert len(a) == len(b) == 200 and a != b and {e.id for e in a} | {e.id for e in b} <= {e.id for e in pool}, name
        rank = {e.id: i for i, e in enumerate(pool)}
        assert [rank[e.id] for e in a] == sorted(rank[e.id] for e in a)      # back in the pool's hash order
        assert load_split(name, "validation", out_dir=out, draw=1) == a       # a draw is a function of its seed
        assert load_split(name, "validation", out_dir=out, draw=1, n=7) == a[:7]
        assert load_split(name, "validation", out_dir=out) == load_split(name, "validation", out_dir=out, n=None) == pool[:200]
        assert S.split_digest(name, "validation", out_dir=out, draw=1) == hashlib.sha256(S._dump(a)).hexdigest()
        assert S.split_digest(name, "validation", out_dir=out, draw=1) != S.split_digest(name, "validation", out_dir=out, draw=2)
        assert S.split_digest(name, "validation", out_dir=out) == hashlib.sha256(S._dump(pool[:200])).hexdigest()
    # a pool of 200 (mgsm, flores, mbpp): every draw is the same 200; test never depends on a draw
    assert load_split("mbpp", "validation", out_dir=out, draw=3) == _load(out, "mbpp", "validation")
    with pytest.raises(ValueError, match="draw"):
        load_split("qasc", "test", out_dir=out, draw=1)
    with pytest.raises(ValueError, match="draw must be an int"):
        load_split("qasc", "validation", out_dir=out, draw=-1)


@needs_data
def test_new_datasets_parse(built):
    out, man = built
    for name, k in NEW.items():
        exs = [e for s in ("train", "pool", "test") for e in _load(out, name, s)]
        assert len(exs) == TRAIN[name] + POOL[name] + EXPECTED[name], name
        for e in exs:
            assert len(e.options) == k and all(o.strip() for o in e.options), (name, e.id)
            assert e.reference in "ABCDEFGH"[:k] and len(e.reference) == 1, (name, e.id)
            q = e.inputs["question"]
            assert q.strip() and "Options:" not in q and "Completion A" not in q, (name, e.id)
            src = e.meta["source"]
            assert src.split(":")[0] in (Path(D.INSTRUCT_SOURCES[name]).name, Path(D.INSTRUCT_SOURCES[name]).stem)
            assert ("rationale" in e.meta) == (name != "codah")
    e = next(e for e in _load(out, "sensemaking", "pool"))
    assert not e.options[0].startswith(("Sentence", '"')) and "sentence" in e.inputs["question"].lower()
    assert {e.options for e in _load(out, "creak", "pool")} == {("yes", "no")}
    assert set(man["datasets"]["qasc"]["sources"]) == {"instruct/cot/qasc_train.tsv"}


@needs_data
def test_heldout_rows_are_the_pool_and_test_source_rows(built):
    out, _ = built
    for name in D.INSTRUCT_SOURCES:
        held = {e.meta["source"] for s in ("pool", "test") for e in _load(out, name, s)}
        assert S.heldout_rows(name) == held and len(held) == POOL[name] + EXPECTED[name], name
        assert not held & {e.meta["source"] for e in _load(out, name, "train")}
    assert "task156_codah_classification_adversarial:0" in S.heldout_rows("codah") | {
        e.meta["source"] for e in _load(out, "codah", "train")}
    with pytest.raises(ValueError, match="not read from instruction data"):
        S.heldout_rows("mmlu")


def test_build_refuses_overlapping_splits(tmp_path, monkeypatch):
    mk = lambda i, g: Example(f"syn/{i}", {"question": f"q{i}"}, "A", ("x", "y"), {"group": g})
    parts = {"train": [mk(0, "g0"), mk(1, "shared")], "pool": [mk(2, "g2")], "validation": [mk(2, "g2")],
             "test": [mk(3, "shared")], "shots": []}
    with pytest.raises(DataError, match=r"syn: splits overlap .*train and test share group 'shared'"):
        S.check_disjoint("syn", parts)
    S.check_disjoint("syn", {**parts, "train": parts["train"][:1]})
    copied = {**parts, "train": [mk(0, "g0"), Example("meld/train/d1u0", {"question": "Q3"}, "A", ("x", "y"), {"group": "g9"})]}
    S.check_disjoint("syn", copied)                                      # content is checked for official splits only
    with pytest.raises(DataError, match="share question/context"):
        S.check_disjoint("meld", {**copied, "test": [Example("t", {"question": "q3 "}, "A", ("x", "y"), {"group": "g3"})]})
    # build_splits runs the guard and writes nothing for the dataset
    monkeypatch.setattr(S, "_build_family", lambda fam, raw, seed: {"arc_c": parts})
    monkeypatch.setattr(S, "raw_dir", lambda root=None: tmp_path)
    with pytest.raises(DataError, match="arc_c: splits overlap"):
        build_splits(tmp_path, tmp_path / "out", seed=0, names=["arc_c"])
    assert not (tmp_path / "out" / "arc_c").exists() and not (tmp_path / "out" / "manifest.json").exists()


@needs_data
def test_family_validation_never_in_any_family_test(built):
    _, man = built
    for fam in (("mmlu_pro", "mmlu_pro_knowledge", "mmlu_pro_reasoning"),):
        vals = {i for n in fam for i in _ids(man, n, "pool")}
        tests = {i for n in fam for i in _ids(man, n, "test")}
        assert not vals & tests
    # FLORES: the same sentence split for both language sets, shot sentences apart
    out = built[0]
    parts = {s: {e.meta["group"] for n in ("flores37", "flores101") for e in _load(out, n, s)}
             for s in ("validation", "test", "shots")}
    assert (len(parts["validation"]), len(parts["shots"]), len(parts["test"])) == (200, 12, 800)
    assert not parts["validation"] & parts["test"] and not parts["shots"] & (parts["validation"] | parts["test"])


@needs_data
def test_mmlu_pro_subsets_follow_the_category_rule(built):
    out, _ = built
    know = {e.meta["category"] for s in ("validation", "test") for e in _load(out, "mmlu_pro_knowledge", s)}
    reas = {e.meta["category"] for s in ("validation", "test") for e in _load(out, "mmlu_pro_reasoning", s)}
    assert know <= set(S.MMLU_PRO_KNOWLEDGE) and reas <= set(S.MMLU_PRO_REASONING)
    assert {"law", "history", "psychology"} <= know and {"math", "physics", "computer science"} <= reas  # Table 11 text
    assert not set(S.MMLU_PRO_KNOWLEDGE) & set(S.MMLU_PRO_REASONING)


@needs_data
def test_flores_languages_and_balance(built):
    out, _ = built
    assert len(D.FLORES37) == 37 and len(D.FLORES101) == 64 and not set(D.FLORES37) & set(D.FLORES101)
    for name, langs in (("flores37", D.FLORES37), ("flores101", D.FLORES101)):
        test = _load(out, name, "test")
        counts = Counter(e.meta["language"] for e in test)
        assert set(counts) == set(langs)
        assert max(counts.values()) - min(counts.values()) <= 1
        ex = test[0]
        assert ex.inputs["language"] == D.FLORES_LANGUAGES[ex.meta["language"]] and ex.reference and ex.inputs["sentence"]


@needs_data
def test_shots_come_from_outside_validation_and_test(built):
    out, _ = built
    for name in ("bbh", "flores37", "flores101"):
        pool = {e.id: e for e in _load(out, name, "shots")}
        scored = {e.id for s in ("pool", "test") for e in _load(out, name, s)}
        assert not set(pool) & scored
        for s in ("pool", "validation", "test"):
            for e in _load(out, name, s):
                ids = e.meta["shot_ids"]
                assert len(ids) == 3 == len(set(ids)) and all(i in pool for i in ids)
                key = "subtask" if name == "bbh" else "language"
                assert all(pool[i].meta[key] == e.meta[key] for i in ids)


@needs_data
def test_emotion_history_is_the_earlier_turns_of_the_same_dialogue(built):
    out, _ = built
    for name in ("meld", "emorynlp"):
        exs = _load(out, name, "validation")
        by_group = {}
        for e in exs: by_group.setdefault(e.meta["group"], []).append(e)
        e = max(exs, key=lambda x: x.meta["turn"])
        hist = e.inputs["history"].split("\n") if e.inputs["history"] else []
        assert len(hist) == e.meta["turn"] > 0
        assert all(": " in line for line in hist) and ": " in e.inputs["utterance"]
        assert e.options == (D.MELD_LABELS if name == "meld" else D.EMORYNLP_LABELS)
        assert e.options["ABCDEFG".index(e.reference)] == e.meta["emotion"]
        assert all(x.inputs["history"] == "" for x in exs if x.meta["turn"] == 0)


@needs_data
def test_manifest_is_stable_across_builds_and_pins_files(built, tmp_path):
    out, man = built
    again = build_splits(out_dir=tmp_path, seed=0, names=["mmlu", "mgsm", "flores37", "bbh", "mmlu_pro_reasoning"])
    for name in again["datasets"]:
        assert again["datasets"][name] == man["datasets"][name], name
        for split, info in man["datasets"][name]["splits"].items():
            assert (tmp_path / info["file"]).read_bytes() == (out / info["file"]).read_bytes()
    assert man["seed"] == 0 and man["split_version"] == D.SPLIT_VERSION
    info = man["datasets"]["gsm8k"]
    assert info["sources"]["gsm8k/test.jsonl"]["sha256"] == hashlib.sha256((RAW / "gsm8k/test.jsonl").read_bytes()).hexdigest()
    for split, s in info["splits"].items():
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    text = (out / "manifest.json").read_text()
    assert str(out) not in text and str(RAW) not in text        # no absolute paths: portable and stable


@needs_data
def test_another_seed_gives_another_split(tmp_path):
    a = build_splits(out_dir=tmp_path / "a", seed=0, names=["arc_c"])
    b = build_splits(out_dir=tmp_path / "b", seed=1, names=["arc_c"])
    va, vb = set(_ids(a, "arc_c", "validation")), set(_ids(b, "arc_c", "validation"))
    assert va != vb and len(va & vb) < 100   # expected overlap 200*200/1172 ≈ 34
    assert _ids(a, "arc_c", "test") != _ids(b, "arc_c", "test")          # the split seed moves test; a draw never does


@needs_data
def test_load_split_builds_on_demand_checks_hashes_and_takes_n(tmp_path):
    exs = load_split("gsm8k", "validation", out_dir=tmp_path)          # nothing built yet: builds
    assert len(exs) == 200 and isinstance(exs[0], Example)
    assert load_split("gsm8k", "validation", n=7, out_dir=tmp_path) == exs[:7]
    with pytest.raises(ValueError, match="has no 'shots' split"):
        load_split("gsm8k", "shots", out_dir=tmp_path)
    f = tmp_path / "gsm8k" / "test.jsonl"
    f.write_bytes(f.read_bytes().replace(b'"gsm8k/', b'"GSM8K/', 1))   # tamper with a built file
    with pytest.raises(DataError, match="sha256 differs"):
        load_split("gsm8k", "test", out_dir=tmp_path)
    f.unlink()                                                          # a deleted file is rebuilt
    assert len(load_split("gsm8k", "test", out_dir=tmp_path)) == 1000
    (tmp_path / "manifest.json").unlink()                               # so is a deleted manifest
    assert load_split("gsm8k", "validation", out_dir=tmp_path) == exs
    test = load_split("gsm8k", "test", out_dir=tmp_path)
    assert len(load_split("gsm8k", "validation", draw=4, out_dir=tmp_path)) == 200
    assert load_split("gsm8k", "test", out_dir=tmp_path) == test                 # test does not change with a draw


@needs_data
def test_rebuild_when_the_split_version_changes(tmp_path, monkeypatch):
    build_splits(out_dir=tmp_path, seed=0, names=["mbpp"])
    man = json.loads((tmp_path / "manifest.json").read_text())
    man["split_version"] = -1
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    assert len(load_split("mbpp", "validation", out_dir=tmp_path)) == 200
    assert json.loads((tmp_path / "manifest.json").read_text())["split_version"] == D.SPLIT_VERSION


def test_unknown_names_and_splits_are_errors():
    with pytest.raises(ValueError, match="valid names: mmlu"):
        load_split("mmlu-pro", "test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("mmlu", "dev")
    with pytest.raises(ValueError, match="valid names"):
        build_splits(out_dir="/nonexistent", names=["nope"])


def test_register_examples_serves_from_memory():
    exs = [Example(f"mem/{i}", {"question": "q"}, "A", ("x", "y")) for i in range(5)]
    register_examples("mem-test", "validation", exs)
    assert load_split("mem-test", "validation") == exs and load_split("mem-test", "validation", n=2) == exs[:2]
    with pytest.raises(ValueError, match="real dataset"):
        register_examples("mmlu", "test", exs)
    with pytest.raises(ValueError, match="duplicate ids"):
        register_examples("mem-test", "test", exs + exs[:1])


def test_example_json_round_trip():
    e = Example("x/1", {"q": "é"}, ["a", "b"], ("o1", "o2"), {"k": 1})
    assert Example.from_json(json.loads(json.dumps(e.to_json()))) == e


def test_encoding_policy_falls_back_per_line(tmp_path):
    text, n = D.decode_text(b"caf\xc3\xa9\nit\x92s \x93quoted\x94\n\x81\n")
    assert text == "café\nit’s “quoted”\n\x81\n" and n == 2
    p = tmp_path / "meld.csv"
    p.write_bytes(b"Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\n"
                  b"It\x92s fine,Joey,joy,0,0\nOk,Ross,neutral,0,1\n")
    rows = D.read_csv(p, ["Utterance", "Emotion"])
    assert rows[0]["Utterance"] == "It’s fine" and D._FALLBACK_LINES[str(p)] == 1
    assert D.decode_text("\ufeffa,b".encode())[0] == "a,b"
    with pytest.raises(DataError, match=r"missing column\(s\) \['Sentiment'\]"):
        D.read_csv(p, ["Sentiment"])


def test_malformed_files_name_the_file_and_the_field(tmp_path):
    (tmp_path / "csqa").mkdir()
    (tmp_path / "csqa" / "dev_rand_split.jsonl").write_text(json.dumps(
        {"answerKey": "F", "id": "x", "question": {"stem": "s", "question_concept": "c",
                                                   "choices": [{"label": l, "text": l} for l in "ABCDE"]}}) + "\n")
    with pytest.raises(DataError, match=r"dev_rand_split.jsonl:1: field 'answerKey'='F'"):
        D.load_csqa(tmp_path)
    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text('{"task_id": 1, "text": "t", "code": "c"}\n')
    with pytest.raises(DataError, match=r"mbpp.jsonl:1: missing field 'test_list'"):
        D.load_mbpp(tmp_path)
    (tmp_path / "mgsm").mkdir()
    for lang in D.MGSM_LANGS: (tmp_path / "mgsm" / f"mgsm_{lang}.tsv").write_text("q\tseven\n")
    with pytest.raises(DataError, match=r"mgsm_bn.tsv:1: field 'answer'='seven' is not a number"):
        D.load_mgsm(tmp_path)
    with pytest.raises(DataError, match="missing data file .*arc_challenge.jsonl"):
        D.load_arc_c(tmp_path)


def test_data_dir_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("GENOME_DATA_DIR", str(tmp_path))
    assert D.data_dir() == tmp_path and D.raw_dir() == tmp_path
    (tmp_path / "raw").mkdir()
    assert D.raw_dir() == tmp_path / "raw"
    monkeypatch.setenv("GENOME_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="GENOME_DATA_DIR"):
        D.data_dir()
    monkeypatch.setenv("GENOME_SPLITS_DIR", str(tmp_path / "sp"))
    assert D.splits_dir(3) == tmp_path / "sp" / "seed3"
    monkeypatch.delenv("GENOME_SPLITS_DIR")
    monkeypatch.setenv("GENOME_NB_CACHE", str(tmp_path / "c"))
    assert D.splits_dir(0) == tmp_path / "c" / "splits" / f"v{D.SPLIT_VERSION}" / "seed0"


def test_assign_splits_is_group_aware_and_order_free():
    pool = [Example(f"t/{i}", {}, "A", None, {"group": f"g{i // 4}"}) for i in range(60)]
    s = S.assign_splits(pool, seed=5, key="t", n_val=10, n_test=30, shot_groups=2)
    assert [len(s[k]) for k in ("validation", "shots", "test")] == [10, 8, 30]
    groups = {k: {e.meta["group"] for e in v} for k, v in s.items()}
    assert not groups["validation"] & groups["test"] and not groups["shots"] & (groups["validation"] | groups["test"])
    assert S.assign_splits(pool[::-1], seed=5, key="t", n_val=10, n_test=30, shot_groups=2) == s
    with pytest.raises(DataError, match="fewer than 100"):
        S.assign_splits(pool, seed=0, key="t", n_val=100)


@needs_data
def test_math_gold_is_the_last_boxed_answer():
    exs = {e.id: e for e in D.load_math(RAW)}
    assert len(exs) == 5000 and all(e.reference for e in exs.values())


def test_data_build_does_not_import_torch():
    "`data` and `splits` write through `rundir.atomic_write`; importing them must not pull torch in (rundir imports it lazily)."
    import subprocess, sys
    code = "import sys, genome_nb.data, genome_nb.splits; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", out
