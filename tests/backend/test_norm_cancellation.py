"""CPU batch norm keeps its precision far from zero (mean subtracted before scaling)."""

import numpy as np
from norm_cancellation import check_eval_forward, check_train_forward

from minicoconv.backend import get_backend


def test_train_forward_does_not_cancel():
    check_train_forward(get_backend("cpu"), np.asarray)


def test_eval_forward_does_not_cancel():
    check_eval_forward(get_backend("cpu"), np.asarray)
