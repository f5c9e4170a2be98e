"""Run a forward pass of a frozen network over many proteins in several processes.

A pass without gradients over thousands of proteins (the states for the head refits, the
validation and test predictions) is a chain of small matrix products. Each of N processes with `threads` threads of its
own takes every N-th protein in order of length, so the shares hold proteins of the same lengths
and finish together. Each process writes what `function(model, records, **options)` returns to a
file, and the caller merges the shares back into input order. On a 2-core Intel Xeon VM two
processes of one thread ran the build's shared pass 1.03 to 1.05 times as fast as one process of
two threads (training/README.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

def processes_of(config: dict, threads: int | None = None) -> tuple[int, int]:
    """Return the processes of a pass and the torch threads of each: train.processes sharing
    `threads` (default train.threads)."""
    processes = max(1, config["train"].get("processes", 1))
    return processes, max(1, (threads or config["train"].get("threads", 1)) // processes)


def merge_shares(parts: list[tuple[list[int], dict]], count: int) -> dict:
    """Merge per-share result dicts into one in input order.

    An array's rows and a list's items belong to the share's records in order. Numbers are sums
    over the records, so they are added.
    """
    merged: dict = {}
    for indices, result in parts:
        for key, value in result.items():
            if isinstance(value, np.ndarray):
                if key not in merged:
                    merged[key] = np.zeros((count,) + value.shape[1:], dtype=value.dtype)
                merged[key][indices] = value
            elif isinstance(value, list):
                target = merged.setdefault(key, [None] * count)
                for row, index in enumerate(indices):
                    target[index] = value[row]
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


def share_order(lengths: list[int], processes: int) -> list[list[int]]:
    """Return, per process, the input indices it takes: every `processes`-th one in order of length."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    return [order[rank::processes] for rank in range(processes)]


def run_in_processes(function: Callable, model, records: list[dict], processes: int, threads: int,
                     **options) -> list[tuple[list[int], object]]:
    """Run `function(model, share, **options)` on shares of `records` in `processes` processes.

    Returns (input indices, result) per share. With one process, or fewer records than processes,
    it runs in this process on all records, with the caller's torch threads.
    """
    if processes <= 1 or len(records) < processes:
        return [(list(range(len(records))), function(model, records, **options))]
    shares = share_order([len(record["sequence"]) for record in records], processes)
    share_records = [[records[index] for index in share] for share in shares]
    with tempfile.TemporaryDirectory(prefix="shards-") as folder:
        torch.multiprocessing.spawn(_share_worker, nprocs=processes, join=True,
                                    args=(function, model, share_records, threads, options, Path(folder)))
        return [(share, torch.load(Path(folder) / f"{rank}.pt")) for rank, share in enumerate(shares)]


def _share_worker(rank: int, function: Callable, model, share_records: list[list[dict]], threads: int,
                  options: dict, folder: Path) -> None:
    torch.set_num_threads(threads)
    torch.save(function(model, share_records[rank], **options), folder / f"{rank}.pt")
