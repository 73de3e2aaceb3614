"""The CUDA memory pool plugin keeps a block until the array *and every view of it* are gone.

numba's slice views hold only a weak proxy to their array's memory pointer, with a reference
count; the plugin must keep the pointer alive until that count drops to zero, as numba's own
manager does. Checked without a GPU: CuPy's allocator is replaced by blocks we can watch.
"""

from __future__ import annotations

import gc
import sys
import types

import pytest

pytest.importorskip("numba.cuda.cudadrv.driver", reason="needs numba's CUDA target (numba-cuda)")


class _Block:
    """Stands in for a pooled cupy.cuda.MemoryPointer: `live` lists the blocks not yet returned."""

    live: set[int] = set()
    next_ptr = 1 << 20

    def __init__(self, size):
        self.ptr = _Block.next_ptr
        _Block.next_ptr += 1 << 12
        _Block.live.add(self.ptr)

    def __del__(self):
        _Block.live.discard(self.ptr)


@pytest.fixture
def manager(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(alloc=_Block)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    from minicoconv.backend.cuda.memory import CuPyPoolMemoryManager

    _Block.live.clear()
    return CuPyPoolMemoryManager(context=None)


def test_block_returns_when_the_array_goes(manager):
    owned = manager.memalloc(256)
    assert len(_Block.live) == 1
    del owned
    gc.collect()
    assert not _Block.live and not manager.allocations


def test_a_view_keeps_the_block_after_the_array_goes(manager):
    owned = manager.memalloc(256)
    view = owned.view(64, 128)  # what slicing a device array does to its gpu_data
    del owned
    gc.collect()
    assert len(_Block.live) == 1, "the block went back to the pool while a view still uses it"
    del view
    gc.collect()
    assert not _Block.live and not manager.allocations
