"""Parity with PyTorch at float32: functional ops, layers, BN running statistics, SGD, StepLR,
and a tiny CNN trained for three steps side by side with its torch twin.

Weights are copied across; every comparison is forward AND every gradient (against a
random cotangent, not just sum()). Tolerances are float32 rounding: rtol 1e-5 with an
atol of 1e-5 for values of order one (sums of a few dozen float32 products).
Skipped when PyTorch is not installed.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.nn import functional as F
from minicoconv.optim import SGD, StepLR

torch = pytest.importorskip("torch")
tF = torch.nn.functional

RTOL, ATOL = 1e-5, 1e-5
DEFAULT_NUMBA_THREADS = numba.get_num_threads()


@pytest.fixture(autouse=True, scope="module")
def one_thread_each():
    """Tiny shapes: thread pools cost more than the work (the tiny-CNN test turns Numba's back on)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    torch.set_num_threads(torch_threads)


def randn(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def pair(array: np.ndarray, requires_grad: bool = True):
    """The same float32 values as a minicoconv tensor and a torch tensor."""
    return (mc.tensor(array, requires_grad=requires_grad),
            torch.tensor(array, requires_grad=requires_grad))


def close(ours, theirs, what: str = "", rtol: float = RTOL, atol: float = ATOL) -> None:
    ours = ours.numpy() if isinstance(ours, mc.Tensor) else np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.dtype == np.float32 or ours.dtype.kind != "f", (what, ours.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


def backward_both(y, ty, seed: int = 99) -> None:
    cot = randn(*y.shape, seed=seed)
    y.backward(mc.tensor(cot))
    ty.backward(torch.tensor(cot))


def check_op(fn, tfn, *arrays) -> None:
    """fn(*tensors) vs tfn(*torch tensors): the output and the gradient of every input."""
    ours, theirs = zip(*(pair(a) for a in arrays))
    y, ty = fn(*ours), tfn(*theirs)
    close(y, ty, "forward")
    backward_both(y, ty)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        close(a.grad, b.grad, f"gradient of input {i}")


# ---- functional ops ----------------------------------------------------------------------
CONVS = {  # x shape, w shape, stride, padding, dilation, groups
    "3x3_same": ((2, 3, 6, 5), (4, 3, 3, 3), 1, 1, 1, 1),
    "strided_dilated_grouped": ((2, 4, 7, 6), (6, 2, 3, 3), (2, 1), (1, 2), (1, 2), 2),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), 2, 1, 1, 3),
    "depthwise_multiplier": ((1, 2, 5, 7), (6, 1, 3, 2), (1, 2), (1, 0), (2, 1), 2),
    "pointwise_1x1": ((3, 5, 4, 4), (2, 5, 1, 1), 1, 0, 1, 1),
    "5x5_stride_3": ((1, 2, 9, 8), (3, 2, 5, 5), 3, 2, 1, 1),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", CONVS)
def test_conv2d(name, bias):
    x_shape, w_shape, stride, padding, dilation, groups = CONVS[name]
    arrays = [randn(*x_shape, seed=1), randn(*w_shape, seed=2)] + ([randn(w_shape[0], seed=3)] if bias else [])
    check_op(lambda x, w, b=None: F.conv2d(x, w, b, stride, padding, dilation, groups),
             lambda x, w, b=None: tF.conv2d(x, w, b, stride, padding, dilation, groups), *arrays)


POOLS = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (1, 2), (1, 0))]


@pytest.mark.parametrize("k, s, p", POOLS)
def test_max_pool2d(k, s, p):
    check_op(lambda x: F.max_pool2d(x, k, s, p), lambda x: tF.max_pool2d(x, k, s, p), randn(2, 3, 7, 6))


@pytest.mark.parametrize("k, s, p", POOLS)
def test_avg_pool2d(k, s, p):
    check_op(lambda x: F.avg_pool2d(x, k, s, p), lambda x: tF.avg_pool2d(x, k, s, p), randn(2, 3, 7, 6))


@pytest.mark.parametrize("hw, out", [((6, 6), 1), ((5, 7), (3, 2)), ((2, 2), (3, 3)), ((3, 1), (5, 4)),
                                     ((7, 9), (4, 5))])
def test_adaptive_avg_pool2d(hw, out):
    check_op(lambda x: F.adaptive_avg_pool2d(x, out), lambda x: tF.adaptive_avg_pool2d(x, out), randn(2, 2, *hw))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(training):
    c = 3
    rm, rv = randn(c, seed=5), np.abs(randn(c, seed=6)) + 0.5
    (mrm, trm), (mrv, trv) = pair(rm, False), pair(rv, False)
    check_op(lambda x, w, b: F.batch_norm(x, mrm, mrv, w, b, training, 0.2, 1e-3),
             lambda x, w, b: tF.batch_norm(x, trm, trv, w, b, training, 0.2, 1e-3),
             randn(4, c, 3, 2, seed=1) * 2 + 1, randn(c, seed=2), randn(c, seed=3))
    close(mrm, trm, "running_mean")
    close(mrv, trv, "running_var")


def test_linear():
    check_op(F.linear, tF.linear, randn(2, 4, 5, seed=1), randn(3, 5, seed=2), randn(3, seed=3))
    check_op(F.linear, tF.linear, randn(4, 5, seed=1), randn(3, 5, seed=2))


def test_flatten_relu_sigmoid_cross_entropy():
    check_op(lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), randn(2, 3, 2, 2))
    check_op(lambda x: F.flatten(x, 2), lambda x: torch.flatten(x, 2), randn(2, 3, 2, 2))
    check_op(F.relu, tF.relu, randn(3, 4))
    check_op(F.sigmoid, torch.sigmoid, randn(3, 4) * 4)
    targets = np.array([0, 3, 1, 1, 2])
    check_op(lambda z: F.cross_entropy(z, targets), lambda z: tF.cross_entropy(z, torch.tensor(targets)),
             randn(5, 4) * 3)


def test_dropout_scaling_matches_torch():
    """The masks come from different generators; the scaling and the eval identity are torch's."""
    x = np.ones((100, 100), dtype=np.float32)
    mc.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = F.dropout(mc.tensor(x), 0.25).numpy(), tF.dropout(torch.tensor(x), 0.25).numpy()
    assert set(np.unique(ours)) == set(np.unique(theirs)) == {np.float32(0), np.float32(1 / 0.75)}
    close(F.dropout(mc.tensor(x), 0.25, training=False), tF.dropout(torch.tensor(x), 0.25, training=False))


# ---- layers ------------------------------------------------------------------------------
def twin(ours: nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    """Copy our parameters and buffers into the torch layer (it keeps its num_batches_tracked)."""
    state = {k: torch.tensor(v) for k, v in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return theirs.train(ours.training)


def check_layer(ours: nn.Module, theirs: torch.nn.Module, x: np.ndarray, seed: int = 0) -> None:
    """Forward, input gradient and every parameter gradient; buffers after the forward."""
    xm, xt = pair(x)
    y, ty = ours(xm), theirs(xt)
    close(y, ty, f"{ours!r} forward")
    backward_both(y, ty, seed)
    close(xm.grad, xt.grad, "input gradient")
    torch_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(torch_params)
    for name, p in ours.named_parameters():
        close(p.grad, torch_params[name].grad, f"gradient of {name}")
    torch_buffers = dict(theirs.named_buffers())
    for name, b in ours.named_buffers():
        close(b, torch_buffers[name], f"buffer {name}")


def _seeded(make):
    mc.manual_seed(0)
    return make()


LAYERS = {
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, 2, 1, groups=2), lambda: torch.nn.Conv2d(4, 6, 3, 2, 1, groups=2),
               (2, 4, 7, 6)),
    "conv2d_depthwise": (lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False),
                         lambda: torch.nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False), (2, 4, 5, 5)),
    "linear": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), (4, 5)),
    "batch_norm": (lambda: nn.BatchNorm2d(3, momentum=0.3), lambda: torch.nn.BatchNorm2d(3, momentum=0.3),
                   (4, 3, 3, 2)),
    "batch_norm_no_affine": (lambda: nn.BatchNorm2d(3, affine=False),
                             lambda: torch.nn.BatchNorm2d(3, affine=False), (4, 3, 2, 2)),
    "relu": (nn.ReLU, torch.nn.ReLU, (3, 4)),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, (3, 4)),
    "dropout_eval": (lambda: nn.Dropout(0.5).eval(), lambda: torch.nn.Dropout(0.5), (3, 4)),
    "max_pool": (lambda: nn.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
    "avg_pool": (lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (2, 3, 7, 6)),
    "adaptive_avg_pool": (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: torch.nn.AdaptiveAvgPool2d((2, 3)),
                          (2, 3, 5, 5)),
    "flatten": (nn.Flatten, torch.nn.Flatten, (2, 3, 2, 2)),
    "identity": (nn.Identity, torch.nn.Identity, (2, 3)),
    "sequential": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)),
                   lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                                               torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                               torch.nn.Linear(12, 2)), (2, 2, 4, 4)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer(name):
    make, make_torch, shape = LAYERS[name]
    ours = _seeded(make)
    check_layer(ours, twin(ours, make_torch()), randn(*shape, seed=1) * 2 + 0.5)


@pytest.mark.parametrize("name", ["batch_norm", "batch_norm_no_affine", "sequential"])
def test_layer_in_eval_mode_after_training(name):
    """Eval uses the running statistics that a few training forwards left behind."""
    make, make_torch, shape = LAYERS[name]
    ours = _seeded(make)
    theirs = twin(ours, make_torch())
    for step in range(3):
        close(ours(mc.tensor(randn(*shape, seed=10 + step) * 3 - 1)),
              theirs(torch.tensor(randn(*shape, seed=10 + step) * 3 - 1)), f"training forward {step}")
    ours.eval(), theirs.eval()
    check_layer(ours, theirs, randn(*shape, seed=20))


def test_batch_norm_running_statistics_over_several_steps():
    ours = nn.BatchNorm2d(4, momentum=0.15, eps=1e-4)
    theirs = twin(ours, torch.nn.BatchNorm2d(4, momentum=0.15, eps=1e-4))
    for step in range(6):
        x = randn(3, 4, 3, 3, seed=step) * (step + 1) + step
        y, ty = ours(mc.tensor(x, requires_grad=True)), theirs(torch.tensor(x, requires_grad=True))
        close(y, ty, f"step {step}")
        (y * y).sum().backward()
        (ty * ty).sum().backward()
    close(ours.running_mean, theirs.running_mean, "running_mean")
    close(ours.running_var, theirs.running_var, "running_var")
    close(ours.weight.grad, theirs.weight.grad, "accumulated weight gradient", rtol=1e-4, atol=1e-4)


def test_default_init_draws_from_pytorchs_distributions():
    """Both libraries draw weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (different generators)."""
    mc.manual_seed(0)
    torch.manual_seed(0)
    for ours, theirs, fan_in in ((nn.Conv2d(16, 32, 3), torch.nn.Conv2d(16, 32, 3), 16 * 9),
                                 (nn.Linear(200, 50), torch.nn.Linear(200, 50), 200)):
        bound = 1 / np.sqrt(fan_in)
        torch_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            values, tvalues = p.numpy(), torch_params[name].detach().numpy()
            assert p.shape == tvalues.shape and p.dtype == tvalues.dtype
            assert np.abs(values).max() <= bound and np.abs(tvalues).max() <= bound
            if name == "weight":   # thousands of draws reach close to the bound, and spread alike
                assert np.abs(values).max() > 0.99 * bound and np.abs(tvalues).max() > 0.99 * bound
                assert abs(values.std() / tvalues.std() - 1) < 0.05


# ---- optimizer -----------------------------------------------------------------------------
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_steps_match_torch(nesterov):
    """The same gradients fed to both optimizers: identical updates over several steps."""
    params = [randn(4, 3, seed=1), randn(3, seed=2)]
    ours = [nn.Parameter(mc.tensor(p)) for p in params]
    theirs = [torch.nn.Parameter(torch.tensor(p)) for p in params]
    options = dict(momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    opt = SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.05}], lr=0.1, **options)
    topt = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.05}], lr=0.1, **options)
    for step in range(6):
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            g = randn(*p.shape, seed=100 * step + i)
            p.grad, tp.grad = mc.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            close(p, tp, f"parameter {i} after step {step}", rtol=1e-6, atol=1e-6)
    bufs = opt.state_dict()["momentum_buffers"]
    for i, tp in enumerate(theirs):
        close(bufs[i], topt.state[tp]["momentum_buffer"], f"momentum buffer {i}", rtol=1e-6, atol=1e-6)


def test_step_lr_matches_torch():
    p, tp = nn.Parameter(mc.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt, topt = SGD([p], lr=0.3), torch.optim.SGD([tp], lr=0.3)
    sched, tsched = StepLR(opt, step_size=3, gamma=0.2), torch.optim.lr_scheduler.StepLR(topt, 3, gamma=0.2)
    for epoch in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12), epoch
        topt.step()
        sched.step()
        tsched.step()


# ---- a tiny CNN, trained side by side --------------------------------------------------------
class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.pool(self.bn(self.conv(x)).relu()).flatten(1))


class TorchTinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_tiny_cnn_trains_like_its_torch_twin():
    """conv + BN + ReLU + max pool + linear + cross-entropy, SGD with momentum and weight decay, 3 steps.

    Runs with Numba's default thread count, so the parallel kernels are exercised too.
    """
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    try:
        mc.manual_seed(0)
        ours = TinyCNN()
        theirs = twin(ours, TorchTinyCNN())
        opt = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for step in range(3):
            x, targets = randn(6, 3, 8, 8, seed=step), np.random.default_rng(step).integers(0, 5, 6)
            opt.zero_grad()
            topt.zero_grad()
            loss = F.cross_entropy(ours(mc.tensor(x)), targets)
            tloss = tF.cross_entropy(theirs(torch.tensor(x)), torch.tensor(targets))
            close(loss, tloss, f"loss at step {step}")
            loss.backward()
            tloss.backward()
            opt.step()
            topt.step()
            tstate = theirs.state_dict()
            for name, value in ours.state_dict().items():
                close(value, tstate[name], f"{name} after step {step}")
        ours.eval(), theirs.eval()
        x = randn(2, 3, 8, 8, seed=42)
        close(ours(mc.tensor(x)), theirs(torch.tensor(x)), "eval-mode logits after training")
    finally:
        numba.set_num_threads(1)
