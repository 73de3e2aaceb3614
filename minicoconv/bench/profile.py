"""Where the time of one call goes, op by op: `op_profile(step)`.

Every differentiable op is a `Function` subclass whose static `forward` and
`backward` do all of its array work, and ops do not call each other, so timing
those two methods of every subclass splits a training step into disjoint parts.
`op_profile` swaps in timing wrappers for the duration of one call and puts the
originals back. Three more rows cover what the ops do not:
"(autograd engine)"  the engine's own work in backward: graph ordering, summing
                     gradients of tensors used twice, un-broadcasting, copying
                     gradients into the leaves' `.grad`;
"(optimizer step)"   `SGD.step`;
"(outside ops)"      the rest: Python between ops, loss checks, zero_grad.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ..autograd import Function, engine
from ..optim.sgd import SGD


@dataclass
class OpTime:
    op: str          # Function subclass name, e.g. "Conv2d"
    phase: str       # "forward" or "backward"
    calls: int
    seconds: float
    share: float     # fraction of the whole call's time


def _all_functions(cls=Function) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_functions(sub))
    return found


def op_profile(step: Callable[[], object], sync: Callable[[], None] | None = None) -> list[OpTime]:
    """Run `step` once with every op's forward/backward timed; rows sorted by time, largest first."""
    totals: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0])
    patched = []

    def wrap(cls, phase, original):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = original(*args, **kwargs)
            if sync is not None:
                sync()
            entry = totals[(cls.__name__, phase)]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            return out
        return staticmethod(timed)

    for cls in _all_functions():
        for phase in ("forward", "backward"):
            if phase in cls.__dict__:  # only where the class defines it (subclasses of ops inherit)
                original = cls.__dict__[phase]
                patched.append((cls, phase, original))
                setattr(cls, phase, wrap(cls, phase, getattr(original, "__func__", original)))
    # whole calls of the engine's backward and the optimizer step (engine's includes the op backwards in it)
    extras = {"engine": (engine, "backward"), "optimizer": (SGD, "step")}
    extra_totals = {name: [0, 0.0] for name in extras}
    originals = {name: getattr(owner, attr) for name, (owner, attr) in extras.items()}

    def wrap_extra(name, original):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = original(*args, **kwargs)
            if sync is not None:
                sync()
            extra_totals[name][0] += 1
            extra_totals[name][1] += time.perf_counter() - start
            return out
        return timed

    for name, (owner, attr) in extras.items():
        setattr(owner, attr, wrap_extra(name, originals[name]))
    try:
        start = time.perf_counter()
        step()
        if sync is not None:
            sync()
        total = time.perf_counter() - start
    finally:
        for cls, phase, original in patched:
            setattr(cls, phase, original)
        for name, (owner, attr) in extras.items():
            setattr(owner, attr, originals[name])
    rows = [OpTime(op, phase, calls, secs, secs / total) for (op, phase), (calls, secs) in totals.items()]
    backward_ops = sum(r.seconds for r in rows if r.phase == "backward")
    calls, secs = extra_totals["engine"]
    if calls:
        rows.append(OpTime("(autograd engine)", "backward", calls, secs - backward_ops, (secs - backward_ops) / total))
    calls, secs = extra_totals["optimizer"]
    if calls:
        rows.append(OpTime("(optimizer step)", "-", calls, secs, secs / total))
    rows.sort(key=lambda r: r.seconds, reverse=True)
    outside = total - sum(r.seconds for r in rows)
    rows.append(OpTime("(outside ops)", "-", 0, outside, outside / total))
    return rows
