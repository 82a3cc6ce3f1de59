"""Ordered maps over worker processes, for the preparation steps that are pure per item (reading a
source, a conversation's MinHash signature): results come back in input order, so the output is the
very one a single process gives, whatever the number of processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

OrderedMap = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


@contextmanager
def worker_pool(processes: int, chunksize: int = 1) -> Iterator[OrderedMap]:
    """A `map(function, items) -> list` over up to `processes` forked workers, kept for several
    calls (a worker costs a fork); in this process when `processes` is 1. Fork, not spawn: a worker
    inherits the loaded modules instead of importing them again. `function` must be a module-level
    function (it is pickled by name)."""
    if processes <= 1:
        yield lambda function, items: [function(item) for item in items]
        return
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        yield lambda function, items: pool.map(function, items, chunksize=chunksize)


def ordered_map(function: Callable[[Any], Any], items: Sequence[Any], processes: int) -> list[Any]:
    """`[function(item) for item in items]` over up to `processes` workers, one item at a time."""
    with worker_pool(min(processes, len(items))) as map_in_order:
        return map_in_order(function, items)
