"""Refit the domain head on frozen final states with a class-balanced loss.

Domain residues are rare (about 1 % of the proteins carry one of the families), so in the
multi-task run the per-residue domain loss is dominated by "no domain" and the head learns little.
This stage keeps the trained network fixed, collects the final states of training proteins (all
with a domain, and as many without), and fits the domain head alone with class weights that give
each class the same total weight.
"""

from __future__ import annotations

import logging
import random
import time

import torch
import torch.nn.functional as F

from .domains import residue_labels
from .model import PAD_ID, encode

log = logging.getLogger("training.domain_head")


@torch.no_grad()
def final_states(model, records, max_tokens: int, batch_size: int = 16):
    """Return per-record final states [residues, d_model] (position of residue j is token j + 1)."""
    model.eval()
    states = []
    for begin in range(0, len(records), batch_size):
        chunk = records[begin:begin + batch_size]
        token_lists = [encode(r["sequence"])[:max_tokens] for r in chunk]
        length = max(len(t) for t in token_lists)
        input_ids = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)
        for row, tokens in enumerate(token_lists):
            input_ids[row, :len(tokens)] = torch.tensor(tokens)
        hidden = model.final_states(input_ids)
        for row, tokens in enumerate(token_lists):
            states.append(hidden[row, 1:len(tokens)].clone())
    return states


def fit_domain_head(model, records, families: list[str], config: dict, seed: int) -> dict:
    """Fit model.domain_head in place on training proteins; return a summary for the manifest."""
    settings = config["train"].get("domain_head", {})
    steps = settings.get("steps", 1500)
    negatives_per_positive = settings.get("negatives_per_positive", 1.0)
    started = time.monotonic()
    rng = random.Random(seed)
    family_index = {family: i for i, family in enumerate(families)}
    train = [r for r in records if r["split"] == "train"]
    positives = [r for r in train if r.get("domains")]
    negatives = [r for r in train if not r.get("domains")]
    rng.shuffle(negatives)
    chosen = positives + negatives[: int(len(positives) * negatives_per_positive)]
    max_tokens = config["model"]["max_length"]
    states = torch.cat(final_states(model, chosen, max_tokens))
    labels = torch.cat([
        torch.tensor(residue_labels(len(r["sequence"]), r["domains"], family_index)[: max_tokens - 1], dtype=torch.long)
        for r in chosen
    ])
    counts = torch.bincount(labels, minlength=len(families) + 1).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), torch.zeros_like(counts))
    head = model.domain_head
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.get("lr", 0.003))
    generator = torch.Generator().manual_seed(seed)
    batch = settings.get("batch_residues", 4096)
    for step in range(steps):
        indices = torch.randint(0, len(labels), (batch,), generator=generator)
        loss = F.cross_entropy(head(states[indices]), labels[indices], weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 250 == 0:
            log.info("domain head step %d loss %.4f", step + 1, loss.item())
    summary = {"proteins": len(chosen), "proteinsWithDomains": len(positives), "residues": int(len(labels)),
               "classCounts": counts.int().tolist(), "steps": steps, "seconds": round(time.monotonic() - started)}
    log.info("domain head refitted: %s", summary)
    return summary
