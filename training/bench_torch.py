"""Time the PyTorch model run eagerly without a prefix cache, as BitNet-style reference code runs it.

Usage: /usr/bin/python3 -m training.bench_torch models/bitnet-protein-tiny [--threads 1] [--runs 20]

Builds ProteinBitNet with the manifest's architecture and loads, when present, the float32 twin
(training/work/<name>/twin/final.pt, else the repository's training/twins/<name>/final.pt) or else the
quantization-aware checkpoint (training/work/<name>/checkpoints/final.pt). Without either it keeps the random initialisation,
which runs the same operations on the same shapes and so takes the same time.

Prints one JSON object with the median forward-pass time in milliseconds, under torch.no_grad(),
for one sequence of --residues residues and a batch of --batch x --batch-residues residues, each
in two modes: float32 (plain F.linear) and BitLinear fake quantization (per-token int8 activations
and weights ternarized on every call, as the training graph does). It also times per-residue
scoring without a cache: one forward pass per prefix, the way code without past keys and values
scores every residue of a sequence for generation or variant work.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from training.model import BOS_ID, FLOAT, TERNARY, ProteinBitNet

REPOSITORY = Path(__file__).resolve().parent.parent


def build_network(manifest: dict) -> ProteinBitNet:
    architecture = manifest["architecture"]
    heads = manifest["heads"]
    return ProteinBitNet(
        layers=architecture["layers"],
        d_model=architecture["dModel"],
        heads=architecture["heads"],
        ffn=architecture["ffn"],
        go_labels=len(heads["go"]["labels"]),
        localization_labels=len(heads["localization"]["labels"]),
        function_labels=len(heads["function"]["labels"]) if "function" in heads else 0,
        domain_labels=len(heads["domain"]["labels"]) if "domain" in heads else 0,
    )


def load_weights(network: ProteinBitNet, name: str) -> str:
    """Load the twin or the main checkpoint of model `name` and return what was loaded."""
    work = REPOSITORY / "training" / "work" / name
    kept_twin = REPOSITORY / "training" / "twins" / name / "final.pt"
    for checkpoint in (work / "twin" / "final.pt", kept_twin, work / "checkpoints" / "final.pt"):
        if not checkpoint.exists():
            continue
        try:
            network.load_state_dict(torch.load(checkpoint, map_location="cpu")["model"])
        except (RuntimeError, KeyError) as error:
            return f"random initialisation ({checkpoint.relative_to(REPOSITORY)} does not fit the manifest: {str(error)[:120]})"
        return str(checkpoint.relative_to(REPOSITORY))
    return "random initialisation (no checkpoint of this model under training/work or training/twins)"


def random_ids(rng: random.Random, batch: int, residues: int) -> torch.Tensor:
    rows = [[BOS_ID] + [rng.randrange(4, 24) for _ in range(residues)] for _ in range(batch)]
    return torch.tensor(rows, dtype=torch.int64)


def median_ms(run, runs: int, warm_up: int) -> float:
    for _ in range(warm_up):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def prefix_scoring(network: ProteinBitNet, ids: torch.Tensor) -> None:
    """Score every residue from a forward pass over its prefix alone, with no past keys and values."""
    for end in range(1, ids.shape[1]):
        prefix = ids[:, :end]
        network(prefix, torch.ones_like(prefix))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.bench_torch", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="model folder with manifest.json")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="timed forward passes per shape after --warm-up untimed ones")
    parser.add_argument("--warm-up", type=int, default=3, help="untimed forward passes per shape (default 3)")
    parser.add_argument("--residues", type=int, default=400, help="residues of the single sequence (default 400)")
    parser.add_argument("--batch", type=int, default=8, help="sequences of the batch (default 8)")
    parser.add_argument("--batch-residues", type=int, default=256, help="residues of each batch sequence (default 256)")
    parser.add_argument("--prefix-runs", type=int, default=1,
                        help="timed runs of per-residue scoring without a cache; 0 skips it (default 1)")
    arguments = parser.parse_args(argv)

    torch.set_num_threads(arguments.threads)
    manifest = json.loads((arguments.model_dir / "manifest.json").read_text())
    network = build_network(manifest).eval()
    weights = load_weights(network, manifest["name"])

    rng = random.Random(7)
    single = random_ids(rng, 1, arguments.residues)
    batch = random_ids(rng, arguments.batch, arguments.batch_residues)
    single_mask = torch.ones_like(single)
    batch_mask = torch.ones_like(batch)

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "weights": weights,
        "runs": arguments.runs,
        "singleTokens": single.shape[1],
        "batchShape": list(batch.shape),
        "modes": {},
    }
    with torch.no_grad():
        for label, mode in (("float32", FLOAT), ("fakeQuant", TERNARY)):
            network.set_quantization(mode)
            result["modes"][label] = {
                "singleMs": median_ms(lambda: network(single, single_mask), arguments.runs, arguments.warm_up),
                "batchMs": median_ms(lambda: network(batch, batch_mask), arguments.runs, arguments.warm_up),
            }
        if arguments.prefix_runs > 0:
            network.set_quantization(FLOAT)
            result["prefixScoringMs"] = median_ms(lambda: prefix_scoring(network, single), arguments.prefix_runs, 0)
            result["prefixScoringPasses"] = single.shape[1] - 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
