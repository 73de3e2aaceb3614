"""Every backend primitive by name, with a one-line note of its signature and shapes.

`PRIMITIVES` is the checklist a backend is held to (tests/contract/test_primitives.py):
each backend class defines every name itself, except those it lists in
`USES_GENERIC_FORM`, which it takes on purpose from the generic forms on `Backend`.
"""

from __future__ import annotations

PRIMITIVES: dict[str, str] = {
    # creation and transfer
    "synchronize": "() -> None; waits for queued work",
    "asarray": "(data, dtype=None) -> array on this backend",
    "to_numpy": "(a) -> numpy.ndarray on the host",
    "zeros": "(shape, dtype) -> array of zeros",
    "full": "(shape, value, dtype) -> array filled with value",
    "copy": "(a) -> a new array equal to a",
    "accumulate": "(total, g) -> total + g (in total's memory where it can)",
    "own": "(g) -> g, or a copy of it that a .grad may keep",
    "astype": "(a, dtype) -> a converted (no copy when already dtype)",
    # elementwise (NumPy broadcasting; a Python scalar keeps the array's dtype)
    "add": "(a, b) -> a + b", "subtract": "(a, b) -> a - b", "multiply": "(a, b) -> a * b",
    "divide": "(a, b) -> a / b", "negative": "(a) -> -a", "power": "(a, b) -> a ** b", "exp": "(a) -> e^a",
    "log": "(a) -> ln a", "sqrt": "(a) -> a^(1/2)", "abs": "(a) -> |a|", "sign": "(a) -> -1, 0 or 1",
    "tanh": "(a) -> tanh a", "sigmoid": "(a) -> 1 / (1 + e^-a)", "maximum": "(a, b) -> max(a, b)",
    "minimum": "(a, b) -> min(a, b)", "where": "(cond, a, b) -> a where cond else b",
    "greater": "(a, b) -> bool a > b", "less": "(a, b) -> bool a < b", "equal": "(a, b) -> bool a == b",
    # reductions
    "sum": "(a, axis=None, keepdims=False) -> sum", "max": "(a, axis=None, keepdims=False) -> max",
    "argmax": "(a, axis=None) -> int64 index of the first max",
    # linear algebra
    "matmul": "(a, b) -> a @ b, batched and broadcasting",
    # shape
    "reshape": "(a, shape) -> view or copy", "transpose": "(a, axes) -> permuted",
    "broadcast_to": "(a, shape) -> broadcast", "getitem": "(a, index) -> a[index]",
    "scatter_add": "(shape, index, values) -> zeros(shape) with values added at index",
    "concatenate": "(arrays, axis) -> joined", "pad": "(a, pad_width, value) -> constant-padded",
    # fused
    "softmax": "(a, axis) -> exp(a) / sum exp(a)", "log_softmax": "(a, axis) -> a - log sum exp(a)",
    "relu_forward": "(a) -> max(a, 0)", "relu_backward": "(g, y) -> g * [y > 0]",
    # training
    "sgd_update": "(param, grad, buf, lr, momentum, weight_decay, nesterov) -> buf; param updated in place",
    "sgd_update_many": "(params, grads, bufs, lr, momentum, weight_decay, nesterov) -> bufs; sgd_update of each",
    # convolution
    "conv2d_forward": "(x (N,C,H,W), w (C',C/g,kh,kw), bias, stride, padding, dilation, groups) -> (y, saved)",
    "conv2d_backward": ("(gy, x, w, saved, stride, padding, dilation, groups, need_dx, need_dw, need_db) "
                        "-> (dx, dw, db)"),
    "per_sample_conv2d_forward": "(x, kernels (N,C',C/g,kh,kw), stride, padding, dilation, groups) -> (y, saved)",
    "per_sample_conv2d_backward": "(gy, x, kernels, saved, stride, padding, dilation, groups, need_dx, need_dk) -> "
                                  "(dx, dkernels)",
    "gathered_conv2d_forward": "(x, weight (G,C'/G,C,kh,kw), idx (G,N,K), scale (G,N,K), stride, padding) -> y",
    # mixtures of expert kernels
    "aggregate_kernels": "(bank (n,C',C/g,kh,kw), coef (B,n) or (B,n,C')) -> kernels (B,C',C/g,kh,kw)",
    "aggregate_kernels_backward": "(dk, bank, coef, need_dbank, need_dcoef, dbank=None) -> (dbank, dcoef)",
    "mixture_conv2d_forward": "(x, bank, coef, spatial (N,kh*kw) or None, stride, padding, dilation) -> (y, saved)",
    "mixture_conv2d_backward": "(gy, x, bank, coef, spatial, saved, stride, padding, dilation, need_dx, need_dbank, "
                               "need_dcoef, need_ds) -> (dx, dbank, dcoef, ds)",
    # pooling
    "max_pool2d_forward": "(x, kernel, stride, padding) -> (y, argmax int64 flat index into H*W)",
    "max_pool2d_backward": "(gy, argmax, x_shape) -> dx",
    "avg_pool2d_forward": "(x, kernel, stride, padding) -> y (padding counted in the divisor)",
    "avg_pool2d_backward": "(gy, x_shape, kernel, stride, padding) -> dx",
    "adaptive_avg_pool2d_forward": "(x, output_size) -> y (N,C,OH,OW), PyTorch's bins",
    "adaptive_avg_pool2d_backward": "(gy, x_shape) -> dx",
    # batch norm
    "batch_norm_train_forward": "(x, weight, bias, eps) -> (y, mean (C,), invstd (C,))",
    "batch_norm_eval_forward": "(x, running_mean, running_var, weight, bias, eps) -> y",
    "batch_norm_backward": "(gy, x, weight, mean, invstd, need_dx, need_dweight, need_dbias) -> (dx, dweight, dbias)",
    "batch_norm_eval_backward": "(gy, running_var, weight, eps, x, running_mean, need_dx, need_dweight, need_dbias) "
                                "-> (dx, dweight, dbias)",
    "batch_norm_update_running": "(running_mean, running_var, mean, invstd, eps, n, momentum) -> None, in place",
    # expert mixing (CoConv)
    "expert_weighted_sum_forward": "(z (N,G*n*D,H,W), r (N,G,n,D)) -> y (N,G*D,H,W)",
    "expert_weighted_sum_backward": "(gy, z, r, need_dz, need_dr) -> (dz, dr)",
    "expert_scale_forward": "(x (N,G*D,H,W), r (N,G,n,D)) -> xs (N,G*n*D,H,W)",
    "expert_scale_backward": "(gxs, x, r, need_dx, need_dr) -> (dx, dr)",
}

#: per backend name, the primitives it takes on purpose from the generic forms on `Backend`
USES_GENERIC_FORM: dict[str, frozenset[str]] = {
    "cpu": frozenset({"sgd_update_many"}),  # a loop of sgd_update: a call costs no launch on a CPU
    "reference": frozenset({"accumulate", "sgd_update_many"}),  # a new array each time: simplest, always correct
    "cuda": frozenset({"accumulate", "gathered_conv2d_forward",
                       "aggregate_kernels", "aggregate_kernels_backward", "mixture_conv2d_forward",
                       "mixture_conv2d_backward"}),
}
