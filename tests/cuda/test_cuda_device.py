"""Device placement: loading the backend, moving data, constructors, modules, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

import minicoconv as mc
from minicoconv import nn

pytestmark = pytest.mark.cuda


def test_backend_is_loaded_once(be):
    from minicoconv.backend import get_backend

    assert be.name == "cuda" and be.is_available()
    assert get_backend("cuda") is be
    assert mc.zeros(2, device="cuda").device == "cuda"


@pytest.mark.parametrize("data", [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array(2.5),                                   # 0-d
    np.arange(12.0).reshape(3, 4)[:, ::2],           # not contiguous
    np.array([True, False, True]),
    np.zeros((0, 3), dtype=np.float32),              # empty
    [[1, 2], [3, 4]],                                # a list
    7,                                               # a Python scalar
], ids=["float32", "0-d", "strided", "bool", "empty", "list", "scalar"])
def test_asarray_round_trip(be, data):
    expected = np.asarray(data)
    got = be.to_numpy(be.asarray(data))
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_asarray_of_device_arrays(be):
    a = be.asarray(np.arange(4.0))
    assert be.asarray(a) is a                        # no copy, as np.asarray
    assert_matches(be, be.asarray(a, dtype=np.float32), np.arange(4.0, dtype=np.float32))
    assert_matches(be, be.asarray(range(3), dtype="int64"), np.arange(3))


def test_strided_device_array_is_made_contiguous(be):
    from numba import cuda

    strided = cuda.to_device(np.arange(10.0))[::2]
    assert not strided.is_c_contiguous()
    assert_matches(be, be.exp(be.asarray(strided)), np.exp(np.arange(0.0, 10.0, 2.0)))


def test_tensor_to_device_and_back_is_differentiable():
    x = mc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and y.to("cuda") is y
    ((y * y).sum()).backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -4.0, 6.0])
    np.testing.assert_array_equal(y.to("cpu").numpy(), x.numpy())


def test_constructors_take_a_device():
    mc.manual_seed(3)
    expected = mc.randn(2, 3).numpy()
    mc.manual_seed(3)
    np.testing.assert_array_equal(mc.randn(2, 3, device="cuda").numpy(), expected)
    assert mc.tensor([1, 2], device="cuda").dtype == mc.int64
    for t in (mc.zeros(2, 2, device="cuda"), mc.ones(3, device="cuda"), mc.full((2,), 5.0, device="cuda"),
              mc.arange(4, device="cuda"), mc.rand(2, device="cuda")):
        assert t.device == "cuda"
    assert mc.ones(3, device="cuda").numpy().tolist() == [1.0, 1.0, 1.0]
    assert "device='cuda'" in repr(mc.zeros(1, device="cuda"))
    assert mc.tensor(2.5, device="cuda").item() == 2.5


def test_module_to_cuda_moves_parameters_and_buffers():
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    state = model.state_dict()
    model.to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    assert all(b.device == "cuda" for b in model.buffers())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    model.load_state_dict(state)
    assert all(p.device == "cuda" for p in model.parameters())


def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="cpu and cuda|cuda and cpu"):
        mc.ones(2) + mc.ones(2, device="cuda")


def test_missing_gpu_is_one_clear_error(monkeypatch):
    from numba import cuda

    from minicoconv.backend.cuda import load_cuda_backend

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="not available") as err:
        load_cuda_backend()
    assert 'pip install "minicoconv[cuda12]"' in str(err.value)
    assert "NUMBA_ENABLE_CUDASIM=1" in str(err.value)
