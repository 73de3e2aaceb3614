"""SGD and StepLR: PyTorch's update rule against a NumPy reference, parameter groups,
state_dict round trips (resuming equals never stopping), and refused hyper-parameters.

The problem is a least-squares fit y ~ x W^T + b in float64, whose gradients are
written out in NumPy, so the reference shares no code with the engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.optim import SGD, StepLR

RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((8, 3)), RNG.standard_normal((8, 2))
W0, B0 = RNG.standard_normal((2, 3)), RNG.standard_normal(2)


def make_model() -> nn.Linear:
    model = nn.Linear(3, 2).double()
    model.load_state_dict({"weight": W0, "bias": B0})
    return model


def loss_and_backward(model: nn.Module) -> float:
    loss = ((model(mc.tensor(X)) - mc.tensor(Y)) ** 2).mean()
    loss.backward()
    return loss.item()


def numpy_grads(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d/dW, d/db of mean((x W^T + b - y)^2)."""
    r = 2 * (X @ w.T + b - Y) / Y.size
    return r.T @ X, r.sum(axis=0)


def numpy_sgd(params, grads, bufs, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's documented algorithm with dampening 0, one step, returning new params and buffers."""
    out_p, out_b = [], []
    for p, g, buf in zip(params, grads, bufs):
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        out_p.append(p - lr * g)
        out_b.append(buf)
    return out_p, out_b


def train(model, optimizer, steps, scheduler=None):
    for _ in range(steps):
        optimizer.zero_grad()
        loss_and_backward(model)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


OPTIONS = [
    dict(),
    dict(momentum=0.9),
    dict(weight_decay=0.05),
    dict(momentum=0.9, weight_decay=0.05),
    dict(momentum=0.9, weight_decay=0.05, nesterov=True),
    dict(momentum=0.5, nesterov=True),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_sgd_matches_the_numpy_reference(options):
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1, **options)
    params, bufs = [W0.copy(), B0.copy()], [None, None]
    for step in range(5):
        optimizer.zero_grad()
        loss_and_backward(model)
        np.testing.assert_allclose(model.weight.grad.numpy(), numpy_grads(*params)[0], rtol=1e-12, atol=1e-14)
        optimizer.step()
        params, bufs = numpy_sgd(params, numpy_grads(*params), bufs, 0.1, **options)
        np.testing.assert_allclose(model.weight.numpy(), params[0], rtol=1e-12, atol=1e-14, err_msg=f"step {step}")
        np.testing.assert_allclose(model.bias.numpy(), params[1], rtol=1e-12, atol=1e-14, err_msg=f"step {step}")


def test_sgd_updates_in_place_and_keeps_the_dtype():
    model = make_model()
    weight, data = model.weight, model.weight.data
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, optimizer, 2)
    assert model.weight is weight and model.weight.data is data and weight.dtype == mc.float64
    model32 = nn.Linear(3, 2)
    opt32 = SGD(model32.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    model32(mc.ones(4, 3)).sum().backward()
    opt32.step()
    opt32.step()
    assert all(p.dtype == mc.float32 for p in model32.parameters())
    assert all(buf.dtype == np.float32 for buf in opt32.state_dict()["momentum_buffers"].values())


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
@pytest.mark.parametrize("layout", ["small", "parallel", "strided"])
def test_cpu_sgd_kernel_matches_the_numpy_rule_in_float32(options, layout):
    """The fused kernel gives the NumPy rule's float32 result; large arrays take the parallel kernel."""
    from minicoconv.backend.cpu.optim_kernels import PARALLEL_MIN_SIZE, sgd_update

    rng = np.random.default_rng(1)
    size = PARALLEL_MIN_SIZE + 3 if layout == "parallel" else 37
    p = rng.standard_normal((2, size)).astype(np.float32)
    param = p.T if layout == "strided" else p  # a transposed view is not C-contiguous
    expect, bufs = [param.copy()], [None]
    buf = None
    for _ in range(3):
        grad = rng.standard_normal(param.shape).astype(np.float32)
        buf = sgd_update(param, grad, buf, 0.1, **{"momentum": 0.0, "weight_decay": 0.0, "nesterov": False,
                                                  **options})
        expect, bufs = numpy_sgd(expect, [grad], bufs, 0.1, **options)
    assert param.dtype == np.float32 and np.shares_memory(param, p)
    np.testing.assert_allclose(param, expect[0], rtol=1e-6, atol=1e-6)
    if options.get("momentum"):
        np.testing.assert_allclose(buf, bufs[0], rtol=1e-6, atol=1e-6)
    else:
        assert buf is None


def test_cpu_sgd_kernel_refuses_mismatched_arrays():
    from minicoconv.backend.cpu.optim_kernels import sgd_update

    param = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="grad of shape"):
        sgd_update(param, np.zeros((4, 3), np.float32), None, 0.1, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="grad of shape"):
        sgd_update(param, np.zeros((3, 4), np.float64), None, 0.1, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="float32/float64"):
        sgd_update(param.astype(np.int32), param.astype(np.int32), None, 0.1, 0.0, 0.0, False)


def test_parameters_without_gradients_are_skipped():
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    loss_and_backward(model)
    model.bias.grad = None
    optimizer.step()
    np.testing.assert_array_equal(model.bias.numpy(), B0)     # not even weight decay touches it
    assert list(optimizer.state_dict()["momentum_buffers"]) == [0]


def test_zero_grad():
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    loss_and_backward(model)
    optimizer.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


def test_parameter_groups_have_their_own_options():
    model = make_model()
    optimizer = SGD([{"params": [model.weight], "momentum": 0.9, "nesterov": True},
                     {"params": [model.bias], "lr": 0.5, "weight_decay": 0.1}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.0]
    w, b, bw, bb = W0.copy(), B0.copy(), None, None
    for _ in range(4):
        train(model, optimizer, 1)
        gw, gb = numpy_grads(w, b)
        (w,), (bw,) = numpy_sgd([w], [gw], [bw], 0.1, momentum=0.9, nesterov=True)
        (b,), (bb,) = numpy_sgd([b], [gb], [bb], 0.5, weight_decay=0.1)
    np.testing.assert_allclose(model.weight.numpy(), w, rtol=1e-12)
    np.testing.assert_allclose(model.bias.numpy(), b, rtol=1e-12)


def test_changing_the_learning_rate_of_a_group_takes_effect():
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.0
    train(model, optimizer, 2)
    np.testing.assert_array_equal(model.weight.numpy(), W0)


@pytest.mark.parametrize("options", OPTIONS[1:], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_state_dict_round_trip_resumes_exactly(options):
    """3 steps, save, load into fresh objects, 4 more steps == 7 steps without stopping (bit for bit)."""
    straight = make_model()
    train(straight, SGD(straight.parameters(), lr=0.05, **options), 7)

    first = make_model()
    opt = SGD(first.parameters(), lr=0.05, **options)
    train(first, opt, 3)
    model_state, opt_state = first.state_dict(), opt.state_dict()
    train(first, opt, 2)                                          # the saved copies must not follow
    resumed = make_model()
    opt2 = SGD(resumed.parameters(), lr=0.05, **options)
    resumed.load_state_dict(model_state)
    opt2.load_state_dict(opt_state)
    train(resumed, opt2, 4)
    np.testing.assert_array_equal(resumed.weight.numpy(), straight.weight.numpy())
    np.testing.assert_array_equal(resumed.bias.numpy(), straight.bias.numpy())


def test_optimizer_state_dict_contents_and_copies():
    model = make_model()
    optimizer = SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.2}], lr=0.1, momentum=0.9)
    train(model, optimizer, 1)
    state = optimizer.state_dict()
    assert state["param_groups"] == [
        dict(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False, n_params=1),
        dict(lr=0.2, momentum=0.9, weight_decay=0.0, nesterov=False, n_params=1)]
    assert sorted(state["momentum_buffers"]) == [0, 1]
    bufs = {i: b.copy() for i, b in state["momentum_buffers"].items()}
    state["momentum_buffers"][0][:] = 99.0                        # a copy: the optimizer is untouched
    train(model, optimizer, 1)
    assert not np.any(optimizer.state_dict()["momentum_buffers"][0] == 99.0)
    assert not np.array_equal(optimizer.state_dict()["momentum_buffers"][1], bufs[1])

    other = make_model()
    other_opt = SGD([{"params": [other.weight]}, {"params": [other.bias]}], lr=0.1, momentum=0.9)
    other_opt.load_state_dict(optimizer.state_dict())
    assert [g["lr"] for g in other_opt.param_groups] == [0.1, 0.2]   # options come back too


def test_optimizer_load_state_dict_refuses_what_does_not_fit():
    model = make_model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, 1)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups do not match"):
        SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.1).load_state_dict(state)
    state["momentum_buffers"][1] = np.zeros(3)
    with pytest.raises(ValueError, match="momentum buffer 1 has shape"):
        SGD(make_model().parameters(), lr=0.1).load_state_dict(state)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-0.1), "invalid learning rate"),
    (dict(lr=0.1, momentum=-0.5), "invalid momentum"),
    (dict(lr=0.1, weight_decay=-1e-4), "invalid weight_decay"),
    (dict(lr=0.1, nesterov=True), "nesterov momentum needs momentum > 0"),
    (dict(lr=0.1, momentum=0.0, nesterov=True), "nesterov momentum needs momentum > 0"),
])
def test_bad_hyper_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD(make_model().parameters(), **kwargs)


def test_bad_group_options_and_empty_parameter_lists_are_refused():
    model = make_model()
    with pytest.raises(ValueError, match="invalid learning rate"):
        SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="invalid momentum"):
        SGD([{"params": [model.weight], "momentum": -0.9}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD(nn.ReLU().parameters(), lr=0.1)


# ---- StepLR -----------------------------------------------------------------------------
def test_step_lr_schedule():
    model = make_model()
    optimizer = SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 1.0}], lr=0.1)
    scheduler = StepLR(optimizer, step_size=3, gamma=0.5)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in optimizer.param_groups])
        scheduler.step()
    want = [[0.1 * 0.5 ** (e // 3), 1.0 * 0.5 ** (e // 3)] for e in range(8)]
    np.testing.assert_allclose(seen, want, rtol=1e-15)
    assert scheduler.last_epoch == 8 and scheduler.get_lr() == [g["lr"] for g in optimizer.param_groups]


def test_step_lr_drives_the_optimizer():
    """Training with the schedule equals the NumPy reference using lr = 0.2 * 0.1 ** (step // 2)."""
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.2, momentum=0.9)
    train(model, optimizer, 5, StepLR(optimizer, step_size=2, gamma=0.1))
    params, bufs = [W0.copy(), B0.copy()], [None, None]
    for step in range(5):
        params, bufs = numpy_sgd(params, numpy_grads(*params), bufs, 0.2 * 0.1 ** (step // 2), momentum=0.9)
    np.testing.assert_allclose(model.weight.numpy(), params[0], rtol=1e-12)


def test_step_lr_state_dict_round_trip():
    straight = make_model()
    opt = SGD(straight.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    train(straight, opt, 7, StepLR(opt, step_size=3, gamma=0.3))

    first = make_model()
    opt1 = SGD(first.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    sched1 = StepLR(opt1, step_size=3, gamma=0.3)
    train(first, opt1, 4, sched1)
    saved = first.state_dict(), opt1.state_dict(), sched1.state_dict()
    assert saved[2] == {"step_size": 3, "gamma": 0.3, "base_lrs": [0.2], "last_epoch": 4}

    resumed = make_model()
    opt2 = SGD(resumed.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    sched2 = StepLR(opt2, step_size=1, gamma=0.9)                 # overwritten by the load
    resumed.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.2 * 0.3)
    train(resumed, opt2, 3, sched2)
    np.testing.assert_array_equal(resumed.weight.numpy(), straight.weight.numpy())
    assert sched2.state_dict() == {"step_size": 3, "gamma": 0.3, "base_lrs": [0.2], "last_epoch": 7}


@pytest.mark.parametrize("step_size", [0, -2])
def test_step_lr_refuses_a_bad_step_size(step_size):
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        StepLR(SGD(make_model().parameters(), lr=0.1), step_size=step_size)
