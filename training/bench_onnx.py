"""Measure ONNX Runtime (CPU) latency of a model folder on random protein sequences.

Usage: python3 -m training.bench_onnx models/bitnet-protein-tiny [--threads 1] [--repeats 20]
Needs the Python onnxruntime package. Prints one line per (batch, length) with the median and
90th-percentile latency in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.bench_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="folder with manifest.json and the ONNX file")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per shape after 3 warm-up runs")
    arguments = parser.parse_args(argv)

    import onnxruntime

    manifest = json.loads((arguments.model_dir / "manifest.json").read_text())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = arguments.threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(arguments.model_dir / manifest["onnxFile"]), options,
                                           providers=["CPUExecutionProvider"])
    rng = random.Random(0)
    residue_ids = list(range(4, 24))
    print(f"onnxruntime {onnxruntime.__version__}, {arguments.threads} thread(s), {platform.machine()}, "
          f"model {manifest['modelId'][:19]}")
    for batch, length in [(1, 64), (1, 128), (1, 256), (1, 512), (8, 256), (32, 256)]:
        input_ids = np.array([[1] + [rng.choice(residue_ids) for _ in range(length - 1)] for _ in range(batch)],
                             dtype=np.int64)
        attention_mask = np.ones_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        for _ in range(3):
            session.run(None, feed)
        timings = []
        for _ in range(arguments.repeats):
            started = time.perf_counter()
            session.run(None, feed)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p90 = timings[min(len(timings) - 1, int(0.9 * len(timings)))]
        print(f"batch {batch:3d} tokens {length:4d}: median {statistics.median(timings):8.1f} ms, "
              f"p90 {p90:8.1f} ms, {batch * length / statistics.median(timings) * 1000:9.0f} tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
