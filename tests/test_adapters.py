"""Schedule adapters (cdfast.schedules.from_torch / from_optax / from_callable).

The reference for ``from_torch`` is a real training loop on a separately built copy of
the same scheduler: the LR each ``optimizer.step()`` sees, read just before it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from cdfast import schedules as S

torch = pytest.importorskip("torch", reason='torch not installed (pip install "cdfast[torch]")')


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))


def _sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


FACTORIES = {
    "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=120, pct_start=0.25),
    "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=120, eta_min=1e-4),
    "warmup+cosine": lambda opt: torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=20),
              torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)], milestones=[20]),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / math.sqrt(s + 1)),
}


def _stepped_reference(factory, T, group=0, make_opt=_sgd):
    """LR seen by each of T real optimizer steps (read just before the step)."""
    model = _model()
    opt = make_opt(model)
    sched = factory(opt)
    x = torch.randn(8, 4)
    seen = []
    for _ in range(T):
        seen.append(opt.param_groups[group]["lr"])
        assert seen[-1] == sched.get_last_lr()[group]
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    return np.array(seen)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_from_torch_matches_a_real_training_loop(kind):
    T = 120
    opt = _sgd(_model())
    lr = S.from_torch(FACTORIES[kind](opt), T)
    want = _stepped_reference(FACTORIES[kind], T)
    assert lr.dtype == np.float64 and lr.shape == (T,) and lr.flags.c_contiguous
    np.testing.assert_array_equal(lr, want)


def test_from_torch_cosine_literal_formula():
    """CosineAnnealingLR's documented closed form: eta_min + (eta_0 - eta_min)(1 + cos(pi t / T_max)) / 2."""
    T, eta0, eta_min = 120, 0.1, 1e-4
    lr = S.from_torch(FACTORIES["cosine"](_sgd(_model(), lr=eta0)), T)
    t = np.arange(T)
    np.testing.assert_allclose(lr, eta_min + (eta0 - eta_min) * (1 + np.cos(np.pi * t / 120)) / 2, rtol=1e-12)


def test_from_torch_leaves_the_users_objects_untouched():
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = FACTORIES["warmup+cosine"](opt)
    x = torch.randn(8, 4)
    for _ in range(5):  # some training: optimizer state exists, the scheduler is mid-way
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    params = [p.detach().clone() for p in model.parameters()]
    opt_state = {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()} for k, s in opt.state.items()}
    sched_state = repr(sched.state_dict())
    groups = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
    last = sched.get_last_lr()

    lr = S.from_torch(sched, 200)

    assert repr(sched.state_dict()) == sched_state and sched.get_last_lr() == last
    assert [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups] == groups
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p.detach(), q)
    for k, s in opt.state.items():
        for n, v in s.items():
            assert torch.equal(v, opt_state[k][n]) if torch.is_tensor(v) else v == opt_state[k][n]
    # the sequence continues from the scheduler's current state: entry 0 is the next update's LR
    assert lr[0] == last[0]
    ref = _stepped_reference(FACTORIES["warmup+cosine"], 205, make_opt=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3))
    np.testing.assert_array_equal(lr, ref[5:])


def test_from_torch_param_groups():
    model = _model()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[1].parameters(), "lr": 0.02}], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.02], total_steps=50)
    lr0 = S.from_torch(sched, 50)
    lr1 = S.from_torch(sched, 50, group=1)
    np.testing.assert_allclose(lr1, lr0 * 0.2, rtol=1e-12)  # same shape, peak 0.02 instead of 0.1
    with pytest.raises(ValueError, match=r"group = 2 must be an integer in \[0, 2\)"):
        S.from_torch(sched, 50, group=2)


def test_from_torch_transformers_style_lambda():
    """transformers' schedules are LambdaLR over functools.partial (linear warmup then linear decay)."""
    def lin(step, *, warmup, total):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    opt = _sgd(_model(), lr=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lin, warmup=10, total=100))
    lr = S.from_torch(sched, 99)
    t = np.arange(99)
    want = 5e-4 * np.where(t < 10, t / 10, (100 - t) / 90)
    np.testing.assert_allclose(lr, want, rtol=1e-13, atol=0)


def test_from_torch_bad_input():
    opt = _sgd(_model())
    with pytest.raises(TypeError, match="ReduceLROnPlateau"):
        S.from_torch(torch.optim.lr_scheduler.ReduceLROnPlateau(opt), 10)
    with pytest.raises(TypeError, match="scheduler must be"):
        S.from_torch(object(), 10)
    with pytest.raises(ValueError, match="T = 0"):
        S.from_torch(FACTORIES["cosine"](opt), 0)
    bad = torch.optim.lr_scheduler.LambdaLR(_sgd(_model()), lambda s: -1.0 if s == 3 else 1.0)
    with pytest.raises(ValueError, match=r"lr\[3\] = -0.1 is negative"):
        S.from_torch(bad, 10)


def test_from_callable_vectorised_and_scalar():
    T = 50
    cos = lambda s: 0.5 * (1 + np.cos(np.pi * np.asarray(s) / T))  # noqa: E731  works on arrays
    step = lambda s: 0.1 if s < 10 else 0.01  # noqa: E731  scalar only (array input raises)
    want_cos = np.array([0.5 * (1 + math.cos(math.pi * s / T)) for s in range(T)])
    np.testing.assert_allclose(S.from_callable(cos, T), want_cos, rtol=1e-15)
    np.testing.assert_allclose(S.from_callable(cos, T, vectorized=False), want_cos, rtol=1e-15)
    np.testing.assert_array_equal(S.from_callable(step, T), [0.1] * 10 + [0.01] * 40)
    with pytest.raises(ValueError, match="array of steps"):
        S.from_callable(step, T, vectorized=True)
    calls = []
    S.from_callable(lambda s: calls.append(s) or 1.0, 5)  # scalar result for the array: falls back to the loop
    assert calls[1:] == [0, 1, 2, 3, 4]


def test_from_callable_bad_values():
    with pytest.raises(ValueError, match=r"lr\[2\] is nan"):
        S.from_callable(lambda s: math.nan if s == 2 else 1.0, 5)
    with pytest.raises(TypeError, match=r"fn\(0\) returned 'x'"):
        S.from_callable(lambda s: "x", 3, vectorized=False)
    with pytest.raises(TypeError, match="callable"):
        S.from_callable(3.0, 3)


def test_from_optax_counts_from_zero():
    """optax calls the schedule with the number of updates done: count 0 is update 1."""
    sched = lambda count: 0.1 * 0.5 ** (np.asarray(count) // 10)  # noqa: E731  a staircase decay
    lr = S.from_optax(sched, 30)
    np.testing.assert_array_equal(lr, [0.1] * 10 + [0.05] * 10 + [0.025] * 10)


def test_from_optax_real_schedule():
    optax = pytest.importorskip("optax", reason="optax not installed")
    T = 200
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=20, decay_steps=T, end_value=1e-5)
    lr = S.from_optax(sched, T)
    want = np.array([float(sched(i)) for i in range(T)])
    np.testing.assert_allclose(lr, want, rtol=1e-6)
    assert lr[0] == 0.0 and lr[20] == pytest.approx(1e-3, rel=1e-6)
