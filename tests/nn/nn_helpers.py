"""Helpers shared by the tests/nn modules.

- `one_numba_thread`: a module-scoped fixture (modules import it and opt in with
  ``pytestmark = pytest.mark.usefixtures("one_numba_thread")``). These tests run many ops
  on arrays of a few hundred elements, where waking Numba's thread pool costs more than
  the work. (Not in a tests/nn/conftest.py: that would shadow tests/conftest.py, which
  test modules import as `conftest`.)
- `randn`: seeded standard-normal NumPy values.
"""

import numba
import numpy as np
import pytest


@pytest.fixture(scope="module")
def one_numba_thread():
    """Tiny arrays: waking Numba's thread pool costs more than the work."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def randn(*shape, seed=0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
