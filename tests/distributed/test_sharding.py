"""Data-parallel pieces that need no MPI: shards, the sharded loader, batch-sharded random draws, placement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicoconv import random as R
from minicoconv.data import BatchLoader, synthetic_cifar100
from minicoconv.data.transforms import random_crop_flip
from minicoconv.distributed import launched_by_mpi
from minicoconv.distributed.placement import local_gpu_index, threads_per_rank
from minicoconv.distributed.sharding import ShardedBatchLoader, check_shards, shard_bounds
from minicoconv.distributed.sync_batchnorm import SyncBatchNorm2d, convert_sync_batchnorm
from tests.train.helpers import TinyNet


@given(st.integers(0, 300), st.integers(1, 9))
def test_shards_tile_the_batch_and_differ_by_at_most_one(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("size", [1, 2, 3])
def test_sharded_loader_concatenates_to_the_one_process_batches(size):
    train, _ = synthetic_cifar100(37, 4)
    ref = BatchLoader(train, 8, shuffle=True, augment=True, seed=5, prefetch=False)
    ref.set_epoch(2)
    full = list(ref)
    shards = []
    for rank in range(size):
        loader = ShardedBatchLoader(train, 8, rank, size, shuffle=True, augment=True, seed=5)
        loader.set_epoch(2)
        assert len(loader) == len(ref)
        shards.append(list(loader))
    for i, (x, y) in enumerate(full):
        assert np.array_equal(np.concatenate([s[i][0] for s in shards]), x)
        assert np.array_equal(np.concatenate([s[i][1] for s in shards]), y)


def test_too_small_a_last_batch_is_refused():
    train, _ = synthetic_cifar100(17, 4)  # batches of 8, 8, 1
    loader = ShardedBatchLoader(train, 8, 0, 2)
    check_shards(loader, 2)
    with pytest.raises(ValueError, match="fewer than the 2 ranks"):
        check_shards(loader, 3)


def test_crop_flip_is_unchanged_by_the_split_into_draws_and_application():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    a = random_crop_flip(images, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    from minicoconv.data.transforms import apply_crop_flip, crop_flip_params

    assert np.array_equal(apply_crop_flip(images, *crop_flip_params(rng, 6)), a)


@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 5))
def test_batch_random_hands_each_shard_its_rows_and_keeps_the_generator_in_step(n, size, row):
    R.manual_seed(7)
    full = R.batch_random((n, row))
    after = R.get_rng_state()
    parts = []
    for rank in range(size):
        lo, hi = shard_bounds(n, rank, size)
        R.manual_seed(7)
        with R.batch_shard(lo, hi, n):
            parts.append(R.batch_random((hi - lo, row)))
        assert R.get_rng_state() == after
    assert np.array_equal(np.concatenate(parts), full)


def test_batch_random_refuses_a_shape_that_is_not_the_shard():
    with R.batch_shard(0, 2, 4), pytest.raises(RuntimeError, match="axis 0"):
        R.batch_random((3, 5))


def test_launcher_detection_reads_the_environment_only():
    assert not launched_by_mpi({})
    assert not launched_by_mpi({"PMI_SIZE": "1"})
    assert launched_by_mpi({"PMI_SIZE": "2"})
    assert launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "4"})


def test_placement():
    assert [local_gpu_index(r, 2) for r in range(4)] == [0, 1, 0, 1]
    with pytest.raises(RuntimeError, match="no GPU"):
        local_gpu_index(0, 0)
    assert threads_per_rank(16, 16, 4) == 4
    assert threads_per_rank(2, 2, 3) == 1
    assert threads_per_rank(16, 2, 4) == 2  # bound by the launcher to 2 cores


def test_convert_sync_batchnorm_keeps_the_tensors_and_the_state_dict():
    model = TinyNet()
    params = {id(p) for p in model.parameters()}
    keys = list(model.state_dict())
    assert convert_sync_batchnorm(model, world=object()) == 1
    assert isinstance(model.bn, SyncBatchNorm2d)
    assert {id(p) for p in model.parameters()} == params
    assert list(model.state_dict()) == keys
