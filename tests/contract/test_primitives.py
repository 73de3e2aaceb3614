"""Every backend defines every primitive in `PRIMITIVES`, or says it takes the generic form.

A primitive a backend neither defines nor lists in `USES_GENERIC_FORM` fails here, as does
a listed one it defines after all (the list must stay true), a public function a backend
has that `PRIMITIVES` does not name, and a generic form on `Backend` missing from the list.
The CUDA backend's class is checked without a GPU: importing it needs only numba.cuda.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import minicoconv  # noqa: F401  (sets up NumPy's threads before NumPy is imported below)
from minicoconv.backend import get_backend
from minicoconv.backend.base import Backend
from minicoconv.backend.primitives import PRIMITIVES, USES_GENERIC_FORM

NOT_PRIMITIVES = {"is_available", "name", "simulator", "gathered_kernel_budget_bytes"}


def backend_classes() -> dict[str, type]:
    from minicoconv.backend.cpu import CPUBackend
    from minicoconv.backend.reference import ReferenceBackend

    classes = {"cpu": CPUBackend, "reference": ReferenceBackend}
    try:
        from minicoconv.backend.cuda.backend import CUDABackend
    except ImportError:  # numba.cuda not installed: its class cannot be imported at all
        return classes
    classes["cuda"] = CUDABackend
    return classes


def own_names(cls: type) -> set[str]:
    """Public names defined by cls or a base below `Backend` (not inherited from `Backend`)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Backend or klass is object:
            break
        names |= {k for k in vars(klass) if not k.startswith("_")}
    return names


BACKENDS = backend_classes()


def violations(cls: type, generic: frozenset[str]) -> list[str]:
    """What breaks the contract: primitives missing (neither defined nor listed as generic),
    listed ones defined after all, public functions PRIMITIVES does not name."""
    own = own_names(cls)
    out = [f"lacks {p}" for p in PRIMITIVES if p not in own and p not in generic]
    out += [f"defines listed {p}" for p in sorted(generic & own)]
    out += [f"unlisted {p}" for p in sorted(own - set(PRIMITIVES) - NOT_PRIMITIVES)]
    return out


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_defines_every_primitive_or_lists_the_generic_form(name):
    cls = BACKENDS[name]
    assert not violations(cls, USES_GENERIC_FORM[name]), f"{name}: {violations(cls, USES_GENERIC_FORM[name])}"
    for p in PRIMITIVES:
        assert callable(getattr(cls, p, None)), f"{name}.{p} is not callable"


def test_the_check_catches_a_missing_a_silently_inherited_and_an_unlisted_primitive():
    from minicoconv.backend.reference import ReferenceBackend

    class Silent(ReferenceBackend):  # a backend that inherits relu_forward from Backend unannounced
        pass

    for klass in (ReferenceBackend, Silent):  # (own_names walks the MRO down to Backend)
        assert not violations(klass, USES_GENERIC_FORM["reference"])
    partial = type("Partial", (Backend,), {k: v for k, v in vars(ReferenceBackend).items()
                                           if k not in ("relu_forward", "conv2d_forward")})
    assert violations(partial, USES_GENERIC_FORM["reference"]) == ["lacks relu_forward", "lacks conv2d_forward"]
    listed = USES_GENERIC_FORM["reference"] | {"relu_forward"}
    assert violations(ReferenceBackend, listed) == ["defines listed relu_forward"]
    extra = type("Extra", (ReferenceBackend,), {"fused_thing": staticmethod(np.add)})
    assert violations(extra, USES_GENERIC_FORM["reference"]) == ["unlisted fused_thing"]


def test_generic_forms_are_primitives():
    generic = {k for k, v in vars(Backend).items() if callable(v) and not k.startswith("_")} - NOT_PRIMITIVES
    assert generic <= set(PRIMITIVES), sorted(generic - set(PRIMITIVES))
    for name, listed in USES_GENERIC_FORM.items():
        assert listed <= generic, f"{name} lists {sorted(listed - generic)}, which have no generic form"


def test_every_primitive_has_a_note():
    assert len(PRIMITIVES) >= 60
    for p, note in PRIMITIVES.items():
        assert note.strip() and "\n" not in note, p


def test_the_check_catches_a_missing_and_a_silently_inherited_primitive():
    from minicoconv.backend.reference import ReferenceBackend

    class Lacking(ReferenceBackend):  # hides a primitive: inherited from Backend? no, absent
        pass

    del_one = {k for k in own_names(Lacking)} - {"conv2d_forward"}
    assert "conv2d_forward" not in del_one and "conv2d_forward" in PRIMITIVES

    class Silent(Backend):  # inherits relu_forward etc. from Backend without listing them
        pass

    missing = [p for p in PRIMITIVES if p not in own_names(Silent)]
    assert "relu_forward" in missing and "conv2d_forward" in missing


# -- the same ValueError for the same bad input ----------------------------------------------------
def _x(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


BAD_CALLS = {
    "conv2d dtype mix": lambda be: be.conv2d_forward(_x(1, 2, 4, 4), _x(3, 2, 3, 3, dtype=np.float32)),
    "conv2d groups": lambda be: be.conv2d_forward(_x(1, 3, 4, 4), _x(4, 3, 3, 3), None, 1, 0, 1, 2),
    "conv2d kernel too big": lambda be: be.conv2d_forward(_x(1, 2, 2, 2), _x(3, 2, 3, 3)),
    "conv2d int input": lambda be: be.conv2d_forward(np.zeros((1, 2, 4, 4), dtype=np.int64), _x(3, 2, 3, 3)),
    "conv2d_backward gy shape": lambda be: be.conv2d_backward(_x(1, 3, 3, 3), _x(1, 2, 4, 4), _x(3, 2, 3, 3)),
    "per_sample batch": lambda be: be.per_sample_conv2d_forward(_x(2, 2, 4, 4), _x(1, 3, 2, 3, 3), (1, 1), (0, 0),
                                                                (1, 1), 1),
    "gathered idx range": lambda be: be.gathered_conv2d_forward(_x(1, 2, 4, 4), _x(1, 2, 2, 3, 3),
                                                                np.full((1, 1, 1), 5), _x(1, 1, 1)),
    "aggregate coef": lambda be: be.aggregate_kernels(_x(3, 4, 2, 3, 3), _x(2, 2)),
    "mixture spatial": lambda be: be.mixture_conv2d_forward(_x(2, 2, 4, 4), _x(3, 4, 2, 3, 3), _x(2, 3), _x(2, 4),
                                                            (1, 1), (0, 0), (1, 1)),
    "max_pool padding": lambda be: be.max_pool2d_forward(_x(1, 1, 4, 4), 2, 1, 2),
    "avg_pool window": lambda be: be.avg_pool2d_forward(_x(1, 1, 2, 2), 4, 4, 0),
    "max_pool argmax": lambda be: be.max_pool2d_backward(_x(1, 1, 1, 1), np.full((1, 1, 1, 1), 9), (1, 1, 2, 2)),
    "adaptive size": lambda be: be.adaptive_avg_pool2d_forward(_x(1, 1, 4, 4), 0),
    "batch_norm one value": lambda be: be.batch_norm_train_forward(_x(1, 2, 1, 1), None, None, 1e-5),
    "batch_norm weight": lambda be: be.batch_norm_train_forward(_x(2, 2, 2, 2), _x(3), None, 1e-5),
    "bn running n": lambda be: be.batch_norm_update_running(_x(2), _x(2), _x(2), _x(2) + 1, 1e-5, 1, 0.1),
    "expert r shape": lambda be: be.expert_weighted_sum_forward(_x(1, 6, 2, 2), _x(1, 1, 2, 2)),
    "sgd shape": lambda be: be.sgd_update(_x(3), _x(4), None, 0.1, 0.0, 0.0, False),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=list(BAD_CALLS))
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_bad_input_is_a_value_error(device, call):
    with pytest.raises(ValueError):
        call(get_backend(device))


def test_reference_signatures_match_the_cpu_backend():
    """Same parameter names and defaults as the CPU's (a contract a caller relies on by keyword)."""
    cpu, other = get_backend("cpu"), get_backend("reference")  # instances: bound methods drop self
    for p in PRIMITIVES:
        a, b = getattr(cpu, p), getattr(other, p)
        try:
            sig_a, sig_b = inspect.signature(a), inspect.signature(b)
        except ValueError:  # a NumPy ufunc: no introspectable signature, the same object on both
            assert a is b, p
            continue
        assert list(sig_b.parameters) == list(sig_a.parameters), f"{p}: {sig_b} != {sig_a}"
        defaults_a = [q.default for q in sig_a.parameters.values()]
        defaults_b = [q.default for q in sig_b.parameters.values()]
        assert defaults_b == defaults_a, f"{p}: {sig_b} != {sig_a}"
