"""Refit the domain head on frozen final states with a lookahead readout.

Domain residues are rare (about 1 % of the proteins carry one of the families), so in the
multi-task run the per-residue domain loss is dominated by "no domain" and the head learns little.
This stage keeps the trained network fixed, collects the final states of training proteins (all
with a domain, and `negatives_per_positive` times as many without), and fits a new domain head
alone.

The network is causal, so the state at residue j has seen only residues up to j, and a head that
classifies residue j from that state must call a domain's start before it has read any of the
domain. With `lookahead` k, the head reads the state at residue min(j + k, last residue) and
classifies residue j. The graph stays causal, and decoding moves the outputs back by k. The last
k residues of a sequence all take the output at its last residue, and the fit trains the head on
exactly those pairs.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from .domains import residue_labels
from .model import encode, length_sorted_batches

log = logging.getLogger("training.domain_head")


@torch.no_grad()
def final_states(model, records, max_tokens: int, batch_size: int = 16):
    """Return per-record final states [residues, d_model] (position of residue j is token j + 1).

    Records are run in order of length, so batches carry little padding; the result keeps input order.
    """
    model.eval()
    token_lists = [encode(r["sequence"])[:max_tokens] for r in records]
    states: list = [None] * len(records)
    for indices, input_ids, _ in length_sorted_batches(token_lists, batch_size):
        hidden = model.final_states(input_ids)
        for row, index in enumerate(indices):
            states[index] = hidden[row, 1:len(token_lists[index])].clone()
    return states


def lookahead_rows(lengths: list[int], lookahead: int) -> torch.Tensor:
    """Row of the concatenated states that the head reads for each residue: min(j + lookahead, last)."""
    rows = []
    offset = 0
    for length in lengths:
        rows.append(offset + np.minimum(np.arange(length) + lookahead, length - 1))
        offset += length
    return torch.from_numpy(np.concatenate(rows))


def class_weights(labels: torch.Tensor, classes: int, power: float) -> torch.Tensor:
    """Class-balanced weights (each present class gets the same total weight) raised to `power`.

    Power 1 is fully balanced and 0 is unweighted; classes absent from `labels` get weight 0.
    """
    counts = torch.bincount(labels, minlength=classes).float()
    present = counts > 0
    balanced = torch.where(present, counts.sum() / (counts.clamp(min=1) * present.sum()), torch.zeros_like(counts))
    return balanced ** power * present


def domain_head_proteins(records, config: dict, seed: int) -> list:
    """Training proteins of the refit: all with a domain, then `negatives_per_positive` times as many without."""
    negatives_per_positive = config["train"].get("domain_head", {}).get("negatives_per_positive", 1.0)
    train = [r for r in records if r["split"] == "train"]
    positives = [r for r in train if r.get("domains")]
    negatives = [r for r in train if not r.get("domains")]
    random.Random(seed).shuffle(negatives)
    return positives + negatives[: int(len(positives) * negatives_per_positive)]


def fit_domain_head(model, chosen, families: list[str], config: dict, seed: int,
                    per_record: list | None = None, seconds_states: float = 0.0) -> dict:
    """Replace model.domain_head with a head fitted on the training proteins `chosen` (see
    domain_head_proteins); return a summary for the manifest.

    `per_record`, when given, contains the final states of `chosen` (as final_states returns them),
    computed beforehand in `seconds_states`.
    """
    settings = config["train"].get("domain_head", {})
    steps = settings.get("steps", 1500)
    lookahead = settings.get("lookahead", 0)
    hidden = settings.get("hidden", 0)
    power = settings.get("class_weight_power", 1.0)
    started = time.monotonic() - seconds_states

    family_index = {family: i for i, family in enumerate(families)}
    max_tokens = config["model"]["max_length"]
    if per_record is None:
        per_record = final_states(model, chosen, max_tokens)
    states = torch.cat(per_record)
    rows = lookahead_rows([len(s) for s in per_record], lookahead)
    del per_record
    labels = torch.cat([
        torch.tensor(residue_labels(len(r["sequence"]), r.get("domains") or [], family_index)[: max_tokens - 1],
                     dtype=torch.long)
        for r in chosen
    ])
    classes = len(families) + 1
    weights = class_weights(labels, classes, power)

    torch.manual_seed(seed)
    model.replace_domain_head(hidden, lookahead)
    head = model.domain_head
    head.train()
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.get("lr", 0.003))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    batch = settings.get("batch_residues", 4096)
    for step in range(steps):
        indices = torch.randint(0, len(labels), (batch,), generator=generator)
        loss = F.cross_entropy(head(states[rows[indices]]), labels[indices], weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 500 == 0:
            log.info("domain head step %d loss %.4f", step + 1, loss.item())
    head.eval()

    counts = torch.bincount(labels, minlength=classes)
    summary = {"proteins": len(chosen), "proteinsWithDomains": sum(1 for r in chosen if r.get("domains")), "residues": int(len(labels)),
               "classCounts": counts.tolist(), "classWeights": [round(w, 4) for w in weights.tolist()],
               "hidden": hidden, "lookahead": lookahead, "steps": steps,
               "seconds": round(time.monotonic() - started)}
    log.info("domain head refitted: %s", summary)
    return summary
