"Merge methods over LoRA genomes (genome_nb.merge)."
import pytest
import torch
from hypothesis import given, settings, strategies as st
from peft.utils import merge_utils as pmu

from genome_nb.genome import toy_genome
from genome_nb.merge import MERGE_METHODS, delta_distance, get_merge_method, merge, svd_factor

SEEDS = st.integers(0, 10_000)
WEIGHT = st.floats(-2, 2, allow_nan=False).filter(lambda x: abs(x) > 1e-3)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_registry_declares_the_six_methods():
    assert set(MERGE_METHODS) >= {"linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune"}
    for m in MERGE_METHODS.values():
        assert m.reference_url.startswith("https://")
    assert get_merge_method("dare_ties").parameters == {"density": 0.7, "majority_sign_method": "total", "rescale": True}
    assert get_merge_method("dare_linear").stochastic and not get_merge_method("ties").stochastic
    with pytest.raises(ValueError, match="unknown merge method 'slerp'.*'ties'"):
        merge([toy_genome(0)], method="slerp")
    with pytest.raises(ValueError, match="has no parameter 'density'"):
        merge([toy_genome(0), toy_genome(1)], method="linear", density=0.5)


@settings(max_examples=20, deadline=None)
@given(s1=SEEDS, s2=SEEDS)
def test_linear_with_weights_one_zero_returns_the_first(s1, s2):
    g1, g2 = toy_genome(s1), toy_genome(s2)
    assert merge([g1, g2], [1, 0]) == g1
    assert merge([g1, g2], [0, 1], method="task_arithmetic") == g2


@settings(max_examples=20, deadline=None)
@given(seeds=st.lists(SEEDS, min_size=2, max_size=4), data=st.data())
def test_linear_is_the_normalised_weighted_sum(seeds, data):
    gs = [toy_genome(s) for s in seeds]
    w = data.draw(st.lists(st.floats(0.05, 3), min_size=len(gs), max_size=len(gs)))
    want = sum(wi * g.flatten() for wi, g in zip(w, gs)) / sum(w)
    assert torch.allclose(merge(gs, w).flatten(), want, atol=1e-6)
    assert torch.allclose(merge(gs, w, method="task_arithmetic").flatten(), want * sum(w), atol=1e-5)
    assert torch.allclose(merge(gs, w, method="task_arithmetic", normalize=True).flatten(), want, atol=1e-6)


def test_bad_arguments_fail_clearly():
    g1, g2 = toy_genome(1), toy_genome(2)
    with pytest.raises(ValueError, match="2 genomes but 3 weights"):
        merge([g1, g2], [1, 1, 1])
    with pytest.raises(ValueError, match="sum to 0"):
        merge([g1, g2], [1, -1])
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
        merge([g1, g2], method="ties", density=0)
    with pytest.raises(ValueError, match="majority_sign_method"):
        merge([g1, g2], method="ties", majority_sign_method="median")
    with pytest.raises(ValueError, match="genome 1 differs from genome 0 in target_modules"):
        merge([g1, toy_genome(2, targets=("q_proj",))])
    with pytest.raises(ValueError, match="refactor='cat' is exact only for linear"):
        merge([g1, g2], method="ties", space="delta", refactor="cat")


def test_dare_randomness_comes_from_the_generator_only():
    gs = [toy_genome(s) for s in range(3)]
    with pytest.raises(ValueError, match="pass generator"):
        merge(gs, method="dare_linear")
    torch.manual_seed(5)
    expected_next = torch.rand(2)
    torch.manual_seed(5)
    for method in ("dare_linear", "dare_ties"):
        a = merge(gs, method=method, generator=gen(11))
        assert a.digest() == merge(gs, method=method, generator=gen(11)).digest()
        assert a.digest() != merge(gs, method=method, generator=gen(12)).digest()
    assert torch.equal(torch.rand(2), expected_next)  # the global RNG was not touched
    g = gen(3)
    first, second = merge(gs, method="dare_ties", generator=g), merge(gs, method="dare_ties", generator=g)
    assert first != second  # the generator advances between calls


def test_dare_kernels_equal_peft_and_rescale_is_the_only_difference():
    g1, g2 = toy_genome(1), toy_genome(2)
    k = next(iter(g1))
    ts, w = [g1[k], g2[k]], torch.tensor([0.3, 0.7])
    for name, peft_fn, extra in [("dare_linear", pmu.dare_linear, {}), ("dare_ties", pmu.dare_ties, {"majority_sign_method": "total"})]:
        torch.manual_seed(0)
        ours = get_merge_method(name).kernel(ts, w, 0.4, **extra)
        torch.manual_seed(0)
        assert torch.equal(ours, peft_fn(ts, w, 0.4, **extra))
    # one genome, weight 1, tensor by tensor (space="lora"): every entry is dropped or kept; kept entries are
    # x / density (paper) or x (released code)
    x = g1.flatten()
    scaled = merge([g1], [1.0], method="dare_linear", density=0.25, space="lora", generator=gen(0)).flatten()
    plain = merge([g1], [1.0], method="dare_linear", density=0.25, rescale=False, space="lora", generator=gen(0)).flatten()
    kept = scaled != 0
    assert 0.1 < kept.float().mean() < 0.45
    assert torch.allclose(scaled[kept], x[kept] / 0.25) and torch.allclose(plain[kept], x[kept])
    assert torch.equal(plain == 0, ~kept)


def test_ties_and_magnitude_prune():
    "The kernels tensor by tensor (space='lora'; their default space is ΔW, tested below)."
    g1, g2 = toy_genome(1), toy_genome(2)
    assert torch.allclose(merge([g1, g1], [1, 1], method="ties", density=1.0, space="lora").flatten(), g1.flatten(), atol=1e-7)
    pruned = merge([g1], [1.0], method="magnitude_prune", density=0.5, space="lora")
    for name, t in pruned.items():
        keep = int(0.5 * t.numel())
        assert int((t != 0).sum()) == keep
        assert t.abs().max() == g1[name].abs().max()  # the largest entries survive
    # ties: where both parents agree in sign and survive pruning, the result is their weighted mean
    out = merge([g1, g2], [1, 1], method="ties", density=1.0, space="lora").flatten()
    a, b = g1.flatten(), g2.flatten()
    agree = torch.sign(a) == torch.sign(b)
    assert torch.allclose(out[agree], (a[agree] + b[agree]) / 2, atol=1e-7)


@settings(max_examples=15, deadline=None)
@given(seeds=st.lists(SEEDS, min_size=2, max_size=3, unique=True), data=st.data())
def test_delta_cat_is_exact_and_svd_is_eckart_young(seeds, data):
    gs = [toy_genome(s, r=2, dim=6) for s in seeds]
    w = data.draw(st.lists(WEIGHT, min_size=len(gs), max_size=len(gs)))
    cat = merge(gs, w, method="task_arithmetic", space="delta")
    assert cat.spec.r == 2 * len(gs) and cat.spec.scaling == gs[0].spec.scaling
    want = {m: sum(wi * g.delta_weights()[m] for wi, g in zip(w, gs)) for m in gs[0].lora_pairs()}
    for m, d in cat.delta_weights().items():
        assert torch.allclose(d, want[m], atol=1e-6)
    svd, info = merge(gs, w, method="task_arithmetic", space="delta", refactor="svd", rank=2, return_info=True)
    assert svd.spec == gs[0].spec
    for m, d in svd.delta_weights().items():
        s = torch.linalg.svdvals(want[m])
        best = float(s[2:].norm() / s.norm())
        assert abs(info["relative_truncation_error"][m] - best) < 1e-4
        assert abs(float((d - want[m]).norm() / want[m].norm()) - best) < 1e-3
    full = merge(gs, w, method="task_arithmetic", space="delta", refactor="svd", rank=2 * len(gs))
    assert delta_distance(full, cat) < 1e-4


def test_lora_space_is_not_delta_space():
    "The default merges A and B separately: cross terms appear, so ΔW is not the weighted ΔW sum."
    g1, g2 = toy_genome(1, dim=16), toy_genome(2, dim=16)
    t = 0.5
    lora, exact = merge([g1, g2], [t, 1 - t]), merge([g1, g2], [t, 1 - t], space="delta")
    assert delta_distance(lora, exact) > 0.2
    m = "model.layers.0.self_attn.q_proj"
    (A1, B1), (A2, B2) = g1.lora_pairs()[m], g2.lora_pairs()[m]
    s = g1.spec.scaling
    expanded = s * (t * t * B1 @ A1 + (1 - t) ** 2 * B2 @ A2 + t * (1 - t) * (B1 @ A2 + B2 @ A1))
    assert torch.allclose(lora.delta_weights()[m], expanded, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, density=st.floats(0.6, 0.9), n=st.integers(8, 10))
def test_task_vector_methods_act_on_delta_w(seed, density, n):
    "DARE-TIES of n identical experts is ΔW / density on ΔW (the default), not ΔW / density² as on A and B."
    # every survivor of an entry is x / density, and TIES averages the survivors; an entry all n experts dropped
    # (probability (1 - density)^n ≤ 0.4^8 here) is 0, hence the 2% tolerance
    g = toy_genome(seed, dim=16)
    assert {m.name: m.space for m in MERGE_METHODS.values()} == {
        "linear": "lora", "task_arithmetic": "lora", "ties": "delta", "dare_linear": "delta", "dare_ties": "delta",
        "magnitude_prune": "delta"}
    norm = lambda x: float(sum((d ** 2).sum() for d in x.delta_weights().values()).sqrt())
    out = merge([g] * n, [1.0] * n, method="dare_ties", density=density, generator=gen(seed))
    assert out.spec == g.spec                                   # refactored back to rank r
    assert abs(norm(out) / norm(g) - 1 / density) < 0.02 / density
    lora = merge([g] * n, [1.0] * n, method="dare_ties", density=density, space="lora", generator=gen(seed))
    assert abs(norm(lora) / norm(g) - density ** -2) < 0.02 * density ** -2


def test_svd_factor_pads_when_rank_exceeds_the_matrix():
    d = torch.randn(3, 5, generator=gen(0))
    A, B, err = svd_factor(d, rank=4)
    assert A.shape == (4, 5) and B.shape == (3, 4) and err == 0.0
    assert torch.allclose(B @ A, d, atol=1e-5)
