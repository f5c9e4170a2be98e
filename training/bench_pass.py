"""Time the build's shared pass (network states for the head refits) with one process and with several.

Usage (from the repository root, after the build's data steps and a trained or restored network in
work/NAME/checkpoints/final.pt):
    /usr/bin/python3 -m training.bench_pass --config training/configs/tiny.json --proteins 4000 --processes 1 2

It takes the first --proteins of the pooled heads' training proteins, in the build's order, with
the domain head's proteins first and their final states kept, as the build does. Each run shares
the configuration's `train.threads` among its processes. Prints one JSON line per run, the largest
difference of the pooled states from the first run, and each other run's speed relative to the
first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .bench_train import print_speedups
from .domain_head import domain_head_proteins
from .pooled_heads import network_states, pooled_head_proteins, set_pooling
from .restore import load_network
from .train import build_model

TRAINING_DIR = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.bench_pass", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=TRAINING_DIR / "configs" / "tiny.json")
    parser.add_argument("--work", type=Path, default=TRAINING_DIR / "work", help="cache folder (default: training/work)")
    parser.add_argument("--proteins", type=int, default=4000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    arguments = parser.parse_args(argv)

    config = json.loads(arguments.config.read_text())
    run_dir = arguments.work / config["name"]
    checkpoint = run_dir / "checkpoints" / "final.pt"
    if not checkpoint.exists():
        parser.error(f"{checkpoint} does not exist; build or restore the network first")
    dataset = json.loads((run_dir / "labels.json").read_text())
    meta, records = dataset["meta"], dataset["records"]

    model = build_model(config["model"], meta)
    load_network(model, checkpoint, True, meta)
    set_pooling(model, config)
    seed = config["seed"]
    domain_proteins = domain_head_proteins(records, config, seed)
    proteins = pooled_head_proteins(records, config, seed, domain_proteins)[:arguments.proteins]
    keep = set(range(min(len(domain_proteins), len(proteins))))

    threads = config["train"]["threads"]
    results, first = [], None
    for processes in arguments.processes:
        torch.set_num_threads(threads)
        started = time.monotonic()
        pooled, _ = network_states(model, proteins, config["eval"]["eval_length"], keep, processes=processes,
                                   threads=max(1, threads // processes))
        seconds = time.monotonic() - started
        first = pooled if first is None else first
        result = {"processes": processes, "threadsPerProcess": max(1, threads // processes),
                  "proteins": len(proteins), "withFinalStates": len(keep), "seconds": round(seconds, 1),
                  "largestPooledDifference": float((pooled - first).abs().max())}
        results.append(result)
        print(json.dumps(result), flush=True)
    print_speedups(results, "seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
