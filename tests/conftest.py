"""Shared test configuration: hypothesis profiles, strategies and fixtures.

Hypothesis profiles (pick one with ``HYPOTHESIS_PROFILE=dev pytest``):

- ``ci`` (default): 25 examples per test, no deadline -- keeps the suite fast;
- ``dev``: 200 examples, for a thorough local run;
- ``debug``: 10 examples with verbose output.

The strategies live in ``strategies.py`` (``from strategies import arrays``), not here:
nested conftest files (``tests/cuda/conftest.py``) would shadow a module named ``conftest``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Verbosity, settings

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile("debug", max_examples=10, deadline=None, verbosity=Verbosity.verbose)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def torch():
    """PyTorch, for parity tests; the test is skipped when it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch on one thread for a module's parity tests (small tensors; a stable, comparable reference)."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
