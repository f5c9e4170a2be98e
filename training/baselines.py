"""Baselines on the same split: naive term frequency and DIAMOND homology transfer from the training split."""

from __future__ import annotations

import collections
import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

log = logging.getLogger("training.baselines")

IDENTITY_BINS = [("<30%", 0.0, 30.0), ("30-50%", 30.0, 50.0), ("50-70%", 50.0, 70.0), (">=70%", 70.0, 101.0)]


def write_fasta(records, path: Path) -> None:
    with open(path, "w") as handle:
        for record in records:
            handle.write(f">{record['accession']}\n{record['sequence']}\n")


def run_diamond(train_records, query_records, out_dir: Path, threads: int = 2) -> dict[str, list[tuple[str, float, float]]]:
    """Search the query proteins against the training split with DIAMOND blastp.

    Returns accession -> [(training accession, percent identity, bitscore)], best hit first. The
    search runs in --more-sensitive mode with an E-value cutoff of 1e-3 and up to 25 targets per query.
    """
    if shutil.which("diamond") is None:
        raise SystemExit("diamond not found: install Debian's diamond-aligner package")
    out_dir.mkdir(parents=True, exist_ok=True)
    train_fasta, query_fasta = out_dir / "train.fasta", out_dir / "queries.fasta"
    write_fasta(train_records, train_fasta)
    write_fasta(query_records, query_fasta)
    database = out_dir / "train"
    hits_path, key_path = out_dir / "hits.tsv", out_dir / "hits.key"
    command = ["diamond", "blastp", "--db", str(database), "--query", str(query_fasta), "--out", str(hits_path),
               "--outfmt", "6", "qseqid", "sseqid", "pident", "bitscore", "--more-sensitive", "--evalue", "1e-3",
               "--max-target-seqs", "25", "--quiet"]
    # The hits depend only on the two FASTA files and the search settings (not on the thread count),
    # so a search of the same proteins reuses them.
    digest = hashlib.sha256()
    for part in (train_fasta.read_bytes(), query_fasta.read_bytes(), " ".join(command).encode()):
        digest.update(hashlib.sha256(part).digest())
    key = digest.hexdigest()
    if hits_path.exists() and key_path.exists() and key_path.read_text() == key:
        log.info("reusing the DIAMOND hits in %s (same proteins and settings)", hits_path)
    else:
        key_path.unlink(missing_ok=True)
        subprocess.run(["diamond", "makedb", "--in", str(train_fasta), "--db", str(database), "--threads", str(threads),
                        "--quiet"], check=True)
        log.info("running %s", " ".join(command))
        subprocess.run(command + ["--threads", str(threads)], check=True)
        key_path.write_text(key)
    hits: dict[str, list[tuple[str, float, float]]] = collections.defaultdict(list)
    with open(hits_path) as handle:
        for line in handle:
            query, target, identity, bitscore = line.split("\t")
            if query == target:
                continue
            hits[query].append((target, float(identity), float(bitscore)))
    for entries in hits.values():
        entries.sort(key=lambda entry: -entry[2])
    return dict(hits)


def identity_bin(hits: list) -> str:
    """Bin of a protein's best identity to the training split; no DIAMOND hit counts as < 30 %."""
    best = max((identity for _, identity, _ in hits), default=0.0)
    for name, low, high in IDENTITY_BINS:
        if low <= best < high:
            return name
    return IDENTITY_BINS[-1][0]


def transfer_scores(records, hits: dict, train_by_accession: dict, field: str, size: int, weighted: bool) -> np.ndarray:
    """Scores of label vector `field` transferred from DIAMOND hits that carry that label vector.

    Best hit: the labels of the highest-bitscore hit with a known vector, scored by its identity / 100.
    Weighted: per label, the bitscore-weighted fraction of hits (with a known vector) that carry it.
    Proteins without such a hit score 0 everywhere.
    """
    scores = np.zeros((len(records), size))
    for row, record in enumerate(records):
        usable = [(target, identity, bitscore) for target, identity, bitscore in hits.get(record["accession"], [])
                  if train_by_accession[target].get(field)]
        if not usable:
            continue
        if not weighted:
            target, identity, _ = usable[0]
            scores[row] = np.array(train_by_accession[target][field], dtype=float) * identity / 100.0
            continue
        total = sum(bitscore for _, _, bitscore in usable)
        for target, _, bitscore in usable:
            scores[row] += np.array(train_by_accession[target][field], dtype=float) * bitscore / total
    return scores


def transfer_go(records, hits: dict, train_by_accession: dict, size: int, weighted: bool) -> np.ndarray:
    """GO scores transferred per aspect: a hit counts for an aspect only when it is annotated in it."""
    scores = np.zeros((len(records), size))
    aspects = train_by_accession["__aspects__"]
    for aspect in "CFP":
        columns = np.array([i for i, a in enumerate(aspects) if a == aspect])
        if not len(columns):
            continue
        for row, record in enumerate(records):
            usable = [(t, identity, bitscore) for t, identity, bitscore in hits.get(record["accession"], [])
                      if aspect in train_by_accession[t]["goAspects"]]
            if not usable:
                continue
            if not weighted:
                target, identity, _ = usable[0]
                scores[row, columns] = np.array(train_by_accession[target]["go"], dtype=float)[columns] * identity / 100.0
                continue
            total = sum(bitscore for _, _, bitscore in usable)
            for target, _, bitscore in usable:
                scores[row, columns] += np.array(train_by_accession[target]["go"], dtype=float)[columns] * bitscore / total
    return scores


def diamond_predictions(records, hits: dict, train_records, meta: dict, weighted: bool) -> dict:
    """Prediction arrays in the layout of evaluate.predict for a DIAMOND transfer baseline."""
    train_by_accession: dict = {r["accession"]: r for r in train_records}
    train_by_accession["__aspects__"] = meta["goAspects"]
    return {
        "localization": transfer_scores(records, hits, train_by_accession, "localization",
                                        len(meta["localizationLabels"]), weighted),
        "function": transfer_scores(records, hits, train_by_accession, "function", len(meta["functionLabels"]), weighted),
        "go": transfer_go(records, hits, train_by_accession, len(meta["goLabels"]), weighted),
    }


def frequency_predictions(records, train_records, meta: dict) -> dict:
    """Naive baseline: every protein gets each label's frequency in the training split."""

    def frequencies(field: str, size: int) -> np.ndarray:
        rows = [r[field] for r in train_records if r.get(field)]
        return np.array(rows, dtype=float).mean(axis=0) if rows else np.zeros(size)

    go_counts = np.zeros(len(meta["goLabels"]))
    go_totals = np.zeros(len(meta["goLabels"]))
    aspects = np.array(meta["goAspects"])
    for record in train_records:
        known = np.array([a in record["goAspects"] for a in aspects])
        go_totals += known
        go_counts += np.array(record["go"]) * known
    go = go_counts / np.maximum(go_totals, 1)
    n = len(records)
    return {
        "localization": np.tile(frequencies("localization", len(meta["localizationLabels"])), (n, 1)),
        "function": np.tile(frequencies("function", len(meta["functionLabels"])), (n, 1)),
        "go": np.tile(go, (n, 1)),
    }
