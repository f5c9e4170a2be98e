"""Time training steps of a configuration with one process and with data-parallel processes.

Usage (from the repository root, after the build's data steps have written labels.json):
    /usr/bin/python3 -m training.bench_train --config training/configs/tiny.json --steps 60 --processes 1 2

Each run trains a fresh network for --steps steps on the build's training split, with the
configuration's batches and crops, and the processes share its `train.threads`. The whole run
keeps one weight mode: --mode ternary has the int8 activations and ternary weights of a run's
last phase, and float is the twin's. The time per step is the run's training wall time (from the first step to the last,
without loading the data) over its steps. Prints one JSON line per run, then how many times as
fast as the first run each other run was.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .train import train

TRAINING_DIR = Path(__file__).resolve().parent


def seconds_per_step(config: dict, labels: Path, processes: int, steps: int, mode: str) -> float:
    config = json.loads(json.dumps(config))
    settings = config["train"]
    settings.update(processes=processes, max_steps=steps, log_every=10, checkpoint_every=10 ** 9)
    if mode == "ternary":
        settings.update(int8_from=0.0, ternary_from=0.0)
    else:
        settings["full_precision"] = True
    with tempfile.TemporaryDirectory() as folder:
        summary = train(config, labels, Path(folder), float("inf"))
    return summary["wallSeconds"] / summary["steps"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.bench_train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=TRAINING_DIR / "configs" / "tiny.json")
    parser.add_argument("--work", type=Path, default=TRAINING_DIR / "work", help="cache folder (default: training/work)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mode", choices=("ternary", "float"), default="ternary")
    arguments = parser.parse_args(argv)
    config = json.loads(arguments.config.read_text())
    labels = arguments.work / config["name"] / "labels.json"
    if not labels.exists():
        parser.error(f"{labels} does not exist; run the build's data steps first")
    results = []
    for processes in arguments.processes:
        seconds = seconds_per_step(config, labels, processes, arguments.steps, arguments.mode)
        result = {"processes": processes, "threads": config["train"]["threads"], "mode": arguments.mode,
                  "steps": arguments.steps, "secondsPerStep": round(seconds, 3)}
        results.append(result)
        print(json.dumps(result), flush=True)
    print_speedups(results, "secondsPerStep")
    return 0


def print_speedups(results: list[dict], seconds: str) -> None:
    """Print how many times as fast as the first run each other run was, by their `seconds` field."""
    base = results[0]
    for result in results[1:]:
        print(f"{result['processes']} process(es) ran {base[seconds] / result[seconds]:.2f}x as fast as "
              f"{base['processes']} process(es)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
