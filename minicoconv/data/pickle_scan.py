"""Refuse pickles whose objects share containers, before unpickling them.

A pickle's memo lets one object appear many times: ``GET n`` pushes the object
stored by ``PUT n`` again. For containers this builds a graph, not a tree, and
a graph of k small lists nested d deep looks like k**d elements to anything
that walks it: ``[[list(range(10**4))] * 10**4] * 10**4`` is a 39 KB file
that reads as 10**12 integers, and a dict key made the same way out of tuples
is hashed, i.e. walked, by the unpickler itself. Without shared containers the
unpickled object is a tree whose size is bounded by the file's, so every walk
of it is linear. CIFAR files never share containers (only their strings and
NumPy globals are memoized and fetched again), so refusing that costs nothing.

The scan follows the opcode stream (`pickletools.genops`, O(file size)) and
knows what was memoized from the opcode that left it on top of the stack.
"""

from __future__ import annotations

import io
import pickletools

#: opcodes after which the top of the stack is a container (list, dict, set, tuple)
CONTAINER_OPS = frozenset({
    "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "EMPTY_SET", "ADDITEMS", "FROZENSET", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
})
PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class SharedContainerError(ValueError):
    """The pickle refers to one container more than once (or uses DUP)."""


def check_no_shared_containers(data: bytes) -> None:
    """SharedContainerError if the pickle in `data` fetches a memoized container again.

    Malformed streams raise what `pickletools.genops` raises (ValueError); the
    unpickler would refuse them too.
    """
    memo: dict[int, bool] = {}   # memo index -> "is a container"
    top_is_container = False     # what the last opcode left on top of the stack
    for op, arg, pos in pickletools.genops(io.BytesIO(data)):
        name = op.name
        if name == "DUP":
            raise SharedContainerError(f"opcode DUP at byte {pos} (no pickler writes it)")
        if name in GET_OPS:
            if memo.get(arg, False):
                raise SharedContainerError(f"a container is referenced again at byte {pos} (memo {arg}); "
                                           "shared containers can stand for exponentially many elements")
            top_is_container = False
        elif name in PUT_OPS:  # memoizes the top of the stack, which stays
            memo[len(memo) if name == "MEMOIZE" else arg] = top_is_container
        else:
            top_is_container = name in CONTAINER_OPS
