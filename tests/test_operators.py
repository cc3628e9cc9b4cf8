"Initialization, crossover, mutation, selection and succession (genome_nb.operators)."
import math

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from genome_nb.genome import toy_genome
from genome_nb.operators import (SuccessionState, crossover, elite_count, fitness_probabilities, init_experience,
                                 init_velocity, initialize, make_generator, mutate, positive_fitness, select, succession)

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)
FITNESS = st.floats(-5, 5, allow_nan=False, allow_infinity=False)


def digests(gs):
    return [g.digest() for g in gs]


# ---------------------------------------------------------------- fitness rule
@FAST
@given(f=st.lists(FITNESS, min_size=1, max_size=12))
def test_fitness_probabilities_are_a_distribution_for_any_fitness(f):
    p = fitness_probabilities(f)
    assert torch.all(p > 0) and abs(float(p.sum()) - 1) < 1e-9
    ft = torch.tensor(f, dtype=torch.float64)
    if float(ft.max() - ft.min()) > 1e-3:  # order is kept
        assert p[int(ft.argmax())] > p[int(ft.argmin())]
    if all(x > 0 for x in f):              # the paper's p_i = f_i / Σ f_k exactly
        assert torch.allclose(p, ft / ft.sum())


@pytest.mark.parametrize("f", [[0.0] * 4, [-1.0] * 4, [0.7] * 4])
def test_all_equal_fitness_is_uniform(f):
    assert torch.allclose(fitness_probabilities(f), torch.full((4,), 0.25, dtype=torch.float64))
    idx = select(f * 2, 5, 0.2, make_generator(0))  # sampling without replacement still works
    assert len(set(idx)) == 5


def test_fitness_must_be_finite():
    with pytest.raises(ValueError, match="finite"):
        positive_fitness([0.1, float("inf")])
    with pytest.raises(ValueError, match="3 values for 2 individuals"):
        crossover([toy_genome(0), toy_genome(1)], [1, 2, 3], 1.0, make_generator(0))


# ---------------------------------------------------------------- initialize
def test_initialize_uses_each_pair_once_while_possible():
    experts = [toy_genome(s, layers=1, dim=4) for s in range(10)]
    pop, origins = initialize(experts, 50, make_generator(0))
    pairs = [o["experts"] for o in origins]
    assert len(set(pairs[:45])) == 45 and all(a < b for a, b in pairs)
    assert len(set(pairs[45:])) == 5
    for g, o in zip(pop[:5], origins[:5]):
        a, b = o["experts"]
        assert 0 <= o["t"] <= 1
        assert torch.allclose(g.flatten(), o["t"] * experts[a].flatten() + (1 - o["t"]) * experts[b].flatten(), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 experts"):
        initialize(experts[:1], 3, make_generator(0))


def test_initialize_weight_schemes_differ_in_distribution():
    experts = [toy_genome(s, layers=1, dim=2, r=1) for s in range(4)]
    t_paper = torch.tensor([o["t"] for o in initialize(experts, 600, make_generator(1))[1]])
    t_rel = torch.tensor([o["t"] for o in initialize(experts, 600, make_generator(1), weights="released")[1]])
    assert abs(float(t_paper.std()) - 1 / math.sqrt(12)) < 0.03  # U(0,1)
    assert float(t_rel.std()) < 0.27                             # u1/(u1+u2) concentrates around 1/2


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_initialize_is_determined_by_the_seed(seed):
    experts = [toy_genome(s, layers=1) for s in range(4)]
    a, oa = initialize(experts, 4, make_generator(seed))
    b, ob = initialize(experts, 4, make_generator(seed))
    c, _ = initialize(experts, 4, make_generator(seed + 1))
    assert digests(a) == digests(b) and oa == ob and digests(a) != digests(c)


# ---------------------------------------------------------------- crossover
@FAST
@given(seed=SEEDS, n=st.integers(2, 8), f=FITNESS)
def test_crossover_of_identical_parents_returns_the_parent(seed, n, f):
    parent = toy_genome(seed % 1000)
    kids, _ = crossover([parent] * n, [f] * n, 1.0, make_generator(seed))
    assert len(kids) == n // 2
    for k in kids:
        assert torch.allclose(k.flatten(), parent.flatten(), atol=1e-7)  # up to float32 rounding of t·w + (1−t)·w


@FAST
@given(seed=SEEDS, f=st.lists(FITNESS, min_size=2, max_size=7))
def test_crossover_child_is_eq3_with_fitness_weights(seed, f):
    pop = [toy_genome(i, layers=1, dim=4) for i in range(len(f))]
    kids, rec = crossover(pop, f, 1.0, make_generator(seed))
    g = positive_fitness(f)
    for k, r in zip(kids, rec):
        i, j = r["parents"]
        assert i != j
        assert abs(r["t"] - float(g[i] / (g[i] + g[j]))) < 1e-12
        if all(x > 0 for x in f):
            assert abs(r["t"] - f[i] / (f[i] + f[j])) < 1e-9
        assert torch.allclose(k.flatten(), r["t"] * pop[i].flatten() + (1 - r["t"]) * pop[j].flatten(), atol=1e-6)


def test_crossover_rate_and_parent_choice():
    pop = [toy_genome(i, layers=1, dim=2, r=1) for i in range(6)]
    fit = [0.05, 0.05, 0.05, 0.05, 0.4, 0.4]
    assert crossover(pop, fit, 0.0, make_generator(0)) == ([], [])
    assert len(crossover(pop, fit, 1.0, make_generator(0))[0]) == 3
    assert len(crossover(pop, fit, 0.5, make_generator(0), count="expected")[0]) == 2  # round(1.5) = 2
    counts = [len(crossover(pop, fit, 0.3, make_generator(s))[0]) for s in range(300)]
    assert abs(sum(counts) / 300 - 0.9) < 0.15 and max(counts) <= 3
    parents = [i for s in range(150) for r in crossover(pop, fit, 1.0, make_generator(s))[1] for i in r["parents"]]
    share_fit = sum(p in (4, 5) for p in parents) / len(parents)
    assert share_fit > 0.6  # the two fit individuals hold 80% of the probability mass
    assert crossover(pop[:1], [1.0], 1.0, make_generator(0)) == ([], [])


def test_crossover_with_a_merge_method_and_its_randomness():
    pop = [toy_genome(i) for i in range(4)]
    fit = [0.1, 0.2, 0.3, 0.4]
    a, _ = crossover(pop, fit, 1.0, make_generator(5), method="dare_ties", density=0.7)
    b, _ = crossover(pop, fit, 1.0, make_generator(5), method="dare_ties", density=0.7)
    c, _ = crossover(pop, fit, 1.0, make_generator(6), method="dare_ties", density=0.7)
    assert digests(a) == digests(b) and digests(a) != digests(c)


# ---------------------------------------------------------------- mutate
@FAST
@given(seed=SEEDS, rate=st.floats(0, 1), sigma=st.floats(0, 1))
def test_mutate_with_zero_rate_or_zero_sigma_is_the_identity(seed, rate, sigma):
    g = toy_genome(seed % 1000)
    assert mutate(g, 0.0, sigma, make_generator(seed)) == g
    assert mutate(g, rate, 0.0, make_generator(seed)) == g


def test_mutate_statistics_seed_and_purity():
    g = toy_genome(0, layers=4, dim=256)  # 8,192 weights: ~1,640 mutated, std of their noise within ~2e-5
    before = g.digest()
    m = mutate(g, 0.2, 0.001, make_generator(0))
    diff = m.flatten() - g.flatten()
    changed = diff != 0
    assert abs(float(changed.float().mean()) - 0.2) < 0.01
    assert abs(float(diff[changed].std()) - 0.001) < 1e-4
    assert g.digest() == before                                     # the parent is untouched
    assert m == mutate(g, 0.2, 0.001, make_generator(0)) and m != mutate(g, 0.2, 0.001, make_generator(1))
    with pytest.raises(ValueError, match="gene_rate"):
        mutate(g, 1.5, 0.1, make_generator(0))
    with pytest.raises(TypeError, match="torch.Generator"):
        mutate(g, 0.1, 0.1, 42)


# ---------------------------------------------------------------- select
@settings(max_examples=40, deadline=None)
@given(f=st.lists(FITNESS, min_size=1, max_size=15), data=st.data(), seed=SEEDS,
       scheme=st.sampled_from(["proportional", "tournament", "random"]),
       rounding=st.sampled_from(["ceil", "floor", "round"]))
def test_select_returns_n_distinct_indices_including_the_elites(f, data, seed, scheme, rounding):
    n = data.draw(st.integers(1, len(f)))
    alpha = data.draw(st.floats(0, 1))
    idx = select(f, n, alpha, make_generator(seed), scheme=scheme, elite_rounding=rounding)
    assert len(idx) == n == len(set(idx)) and all(0 <= i < len(f) for i in idx)
    k = elite_count(n, alpha, rounding) if len(f) > n else 0
    best_first = sorted(range(len(f)), key=lambda i: -f[i])
    assert sorted(f[i] for i in idx[:k]) == sorted(f[i] for i in best_first[:k])  # the elites are the top k
    assert idx == select(f, n, alpha, make_generator(seed), scheme=scheme, elite_rounding=rounding)


def test_select_schemes_and_elite_count():
    assert elite_count(10, 0.3) == 3 and elite_count(10, 0.25) == 3 and elite_count(10, 0.25, "floor") == 2
    assert elite_count(10, 0.25, "round") == 2 and elite_count(10, 0.0) == 0 and elite_count(4, 1.0) == 4
    f = [0.9, 0.8] + [0.0] * 6 + [0.5, 0.5]
    picks = [i for s in range(100) for i in select(f, 4, 0.5, make_generator(s))[2:]]
    assert sum(i in (8, 9) for i in picks) / len(picks) > 0.99  # zero fitness is (almost) never drawn
    # tournament with a pool of 3 and size 3: the best of the non-elites always wins
    assert select([1.0, 0.2, 0.6, 0.4], 2, 0.5, make_generator(0), scheme="tournament") == [0, 2]
    with pytest.raises(ValueError, match="unknown selection scheme"):
        select([1.0, 2.0], 1, 0.5, make_generator(0), scheme="roulette")


# ---------------------------------------------------------------- succession
def population(seed, n=4):
    gen = make_generator(seed)
    w = [toy_genome(seed * 10 + i, layers=1, dim=6) for i in range(n)]
    return w, [init_experience(x, gen) for x in w], gen


@FAST
@given(seed=st.integers(0, 1000), f=st.lists(FITNESS, min_size=4, max_size=4), scheme=st.sampled_from(["paper", "released"]))
def test_succession_with_lambda_zero_leaves_weights_unchanged(seed, f, scheme):
    w, e, gen = population(seed)
    new_w, new_e, state = succession(w, e, f, lam=0.0, scheme=scheme, generator=gen)
    assert digests(new_w) == digests(w)
    assert state.steps == 1 and state.best_fitness == max(f) and state.worst_fitness == min(f)


@FAST
@given(seed=st.integers(0, 1000), f=st.lists(FITNESS, min_size=4, max_size=4),
       phi=st.tuples(*[st.floats(0.01, 2)] * 4), lam=st.floats(0, 2))
def test_succession_paper_is_eq5(seed, f, phi, lam):
    w, e, _ = population(seed)
    new_w, new_e, state = succession(w, e, f, phi=phi, lam=lam)
    ib, iw = max(range(4), key=lambda i: (f[i], -i)), min(range(4), key=lambda i: (f[i], i))
    eg, ec, ew = e[ib].flatten(), e[ib].flatten(), e[iw].flatten()
    C = sum(phi)
    for i in range(4):
        ei = e[i].flatten()
        want = (phi[0] * ei + phi[1] * (eg - ei) + phi[2] * (ec - ei) - phi[3] * (ew - ei)) / C
        assert torch.allclose(new_e[i].flatten(), want, atol=1e-6)
        assert torch.allclose(new_w[i].flatten(), w[i].flatten() + lam * want, atol=1e-6)
    assert state.best == e[ib] and state.worst == e[iw]


def test_succession_state_remembers_global_best_and_worst():
    w, e, _ = population(0)
    w1, e1, s1 = succession(w, e, [0.2, 0.9, 0.1, 0.5])
    w2, e2, s2 = succession(w1, e1, [0.3, 0.4, 0.5, 0.6], state=s1)
    assert (s2.best_fitness, s2.worst_fitness) == (0.9, 0.1) and s2.best == e[1] and s2.worst == e[2]
    w3, e3, s3 = succession(w2, e2, [0.95, 0.4, 0.05, 0.6], state=s2)
    assert s3.best == e2[0] and s3.worst == e2[2] and s3.steps == 3
    # the inputs were not modified
    assert digests(w) == digests(population(0)[0])


def test_succession_released_is_pso_on_weights():
    w, _, gen = population(1)
    v = [init_velocity(x, w, gen) for x in w]
    f = [0.3, 0.1, 0.7, 0.5]
    a_w, a_v, a_s = succession(w, v, f, scheme="released", lam=0.5, generator=make_generator(9))
    b_w, _, b_s = succession(w, v, f, scheme="released", lam=0.5, generator=make_generator(9))
    c_w, _, c_s = succession(w, v, f, scheme="released", lam=0.5, generator=make_generator(10))
    assert digests(a_w) == digests(b_w) and a_s.r == b_s.r and a_s.r != c_s.r
    r, phi = a_s.r, (0.95, 0.2, 0.2, 0.1)
    C = sum(rk * pk for rk, pk in zip(r, phi))
    wg, ww = w[2].flatten(), w[1].flatten()
    lam = 0.5
    for i in range(4):
        wi = w[i].flatten()
        vi = (r[0] * phi[0] * v[i].flatten() + r[2] * phi[2] * (wg - wi) - r[3] * phi[3] * (ww - wi)) / C
        lam *= 0.95
        assert torch.allclose(a_v[i].flatten(), vi, atol=1e-6)
        assert torch.allclose(a_w[i].flatten(), wi + lam * vi, atol=1e-6)
    assert a_s.best == w[2] and abs(a_s.lam - 0.5 * 0.95**4) < 1e-12
    # second call: r is reused, λ keeps decaying from where it stopped
    _, _, s2 = succession(a_w, a_v, f, state=a_s, scheme="released", lam=0.5, generator=make_generator(123))
    assert s2.r == a_s.r and abs(s2.lam - 0.5 * 0.95**8) < 1e-12
    # personal_best=None is the released aliasing (p − w = 0); explicit personal bests add the cognitive term
    same, _, _ = succession(w, v, f, scheme="released", lam=0.5, generator=make_generator(9), personal_best=w)
    assert digests(same) == digests(a_w)
    other, _, _ = succession(w, v, f, scheme="released", lam=0.5, generator=make_generator(9), personal_best=[w[2]] * 4)
    assert digests(other) != digests(a_w)
    ones = succession(w, v, f, scheme="released", random_coefficients=False)[2]
    assert ones.r == (1.0, 1.0, 1.0, 1.0)
    with pytest.raises(TypeError, match="torch.Generator"):
        succession(w, v, f, scheme="released")


def test_init_experience_scale_and_velocity():
    g = toy_genome(0, layers=4, dim=64)
    e = init_experience(g, make_generator(0), scale=1e-3)
    assert e.spec == g.spec and list(e) == list(g)
    assert abs(float(e.flatten().std()) - 1e-3) < 5e-5
    assert init_experience(g, make_generator(0)) == e and init_experience(g, make_generator(1)) != e
    pop = [toy_genome(i) for i in range(3)]
    v = init_velocity(pop[0], pop, make_generator(0))
    assert any(v == p - pop[0] for p in pop)


# ---------------------------------------------------------------- determinism of a whole generation
def generation(seed):
    gen = make_generator(seed)
    pop, _ = initialize([toy_genome(s, layers=1) for s in range(4)], 6, gen)
    fit = [float(x) for x in torch.rand(6, generator=gen)]
    kids, _ = crossover(pop, fit, 0.5, gen, method="dare_linear")
    mutants = [mutate(g, 0.2, 0.01, gen) for g in pop[:2]]
    everyone = pop + kids + mutants
    fit_all = fit + [float(x) for x in torch.rand(len(kids) + 2, generator=gen)]
    keep = select(fit_all, 6, 0.2, gen)
    exp = [init_experience(everyone[i], gen) for i in keep]
    new_w, _, _ = succession([everyone[i] for i in keep], exp, [fit_all[i] for i in keep])
    return digests(new_w)


def test_one_seed_determines_a_generation_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    a = generation(7)
    assert torch.equal(torch.rand(3), want)
    assert a == generation(7) and a != generation(8)
