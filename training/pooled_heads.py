"""Refit the pooled heads (localization, GO, function) as MLPs on the frozen network's pooled states.

In the multi-task run the three pooled heads are linear, and each training protein passes about
once while the network under the heads keeps changing. This stage keeps the trained network fixed
and computes, once, the pooled state of up to `max_proteins` training proteins: the masked mean,
as the graph computes it, of the final states or, with `pooling` "layers_and_composition", of
every layer's states, the final states and the one-hot tokens (see model.POOLING_MODES). Those
wider states are standardized with the training proteins' mean and standard deviation. It then fits for each head a new MLP of `depth` hidden
layers of `hidden` units (GELU, dropout) over `epochs` passes of those states. The weights of the
epoch with the lowest loss on the evaluation's validation proteins are kept. Thresholds are tuned
on the same proteins, and the test split is never read.

Losses are those of training: binary cross-entropy per label, GO labels only in the aspects in
which the protein is annotated, localization and function only for proteins that have labels.
"""

from __future__ import annotations

import logging
import random
import time

import torch
import torch.nn.functional as F

from .model import POOLED_HEADS, encode, length_sorted_batches
from .shards import processes_of, run_in_processes
from .train import go_label_mask, masked_bce

log = logging.getLogger("training.pooled_heads")


def network_states(model, records, max_tokens: int, residue_states: set[int] | None = None, batch_size: int = 4,
                   processes: int = 1, threads: int = 1):
    """Return the pooled state [records, pooled width] of each record truncated to max_tokens, in input order.

    Also return the final states [residues, d_model] of the records whose index is in
    `residue_states`, and None for the others. The position of residue j is token j + 1.

    One forward pass gives both, so the domain-head and pooled-head refits can share it. Small
    batches are faster here. On 1,200 training proteins of the bundled configuration, one thread,
    one run each: 28 s in batches of 4, 38 s in batches of 8 and 45 s in batches of 32. With
    `processes` > 1 the pass runs in that many processes of `threads` threads (see shards.py).
    """
    residue_states = residue_states or set()
    if processes <= 1:
        return _network_states(model, records, max_tokens, residue_states, batch_size)
    marked = [{"sequence": record["sequence"], "keepFinal": index in residue_states}
              for index, record in enumerate(records)]
    pooled = torch.zeros((len(records), model.pooled_width()))
    final: list = [None] * len(records)
    for indices, (share_pooled, share_final) in run_in_processes(_marked_states, model, marked, processes, threads,
                                                                 max_tokens=max_tokens, batch_size=batch_size):
        pooled[indices] = share_pooled
        for row, index in enumerate(indices):
            final[index] = share_final[row]
    return pooled, final


def _marked_states(model, records, max_tokens: int, batch_size: int):
    keep = {index for index, record in enumerate(records) if record["keepFinal"]}
    return _network_states(model, records, max_tokens, keep, batch_size)


@torch.no_grad()
def _network_states(model, records, max_tokens: int, residue_states: set[int], batch_size: int):
    model.eval()
    token_lists = [encode(r["sequence"])[:max_tokens] for r in records]
    pooled = torch.zeros((len(records), model.pooled_width()))
    final: list = [None] * len(records)
    started = time.monotonic()
    for batch, (indices, input_ids, attention_mask) in enumerate(length_sorted_batches(token_lists, batch_size)):
        if batch and batch % max(3200 // batch_size, 1) == 0:
            log.info("network states of %d of %d proteins in %.0f s", batch * batch_size, len(records),
                     time.monotonic() - started)
        outputs = model(input_ids, attention_mask)
        pooled[indices] = outputs["state_sum"] / attention_mask.sum(dim=1, keepdim=True)
        for row, index in enumerate(indices):
            if index in residue_states:
                final[index] = outputs["final_states"][row, 1:len(token_lists[index])].clone()
    return pooled, final


def pooled_states(model, records, max_tokens: int, batch_size: int = 4, processes: int = 1,
                  threads: int = 1) -> torch.Tensor:
    """Return the pooled state [records, pooled width] of each record truncated to max_tokens, in input order."""
    return network_states(model, records, max_tokens, batch_size=batch_size, processes=processes, threads=threads)[0]


def pooled_head_proteins(records, config: dict, seed: int, first=()) -> list:
    """Training proteins for the pooled heads: `first` (training proteins chosen elsewhere, here the
    domain-head refit's), then a seeded random sample of the others, `max_proteins` in all."""
    settings = config["train"]["pooled_heads"]
    train = [r for r in records if r["split"] == "train"]
    random.Random(seed).shuffle(train)
    chosen_ids = {id(r) for r in first}
    chosen = list(first) + [r for r in train if id(r) not in chosen_ids]
    return chosen[: settings.get("max_proteins", len(chosen))]


def head_targets(records, meta: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return per head the targets and the loss mask (1 where the label is known) of the records."""
    targets = {"go": (torch.tensor([r["go"] for r in records], dtype=torch.float32),
                      go_label_mask([r["goAspects"] for r in records], meta["goAspects"]))}
    for head, labels in (("localization", meta["localizationLabels"]), ("function", meta.get("functionLabels"))):
        if not labels:
            continue
        values = torch.tensor([r[head] or [0] * len(labels) for r in records], dtype=torch.float32)
        known = torch.tensor([1.0 if r[head] else 0.0 for r in records])[:, None].expand_as(values)
        targets[head] = (values, known)
    return targets


def heads_loss(model, states: torch.Tensor, targets, rows=None) -> torch.Tensor:
    """Compute the sum over the pooled heads of the masked binary cross-entropy on `rows` of the states."""
    rows = slice(None) if rows is None else rows
    total = states.new_zeros(())
    for head, (values, known) in targets.items():
        total = total + masked_bce(getattr(model, f"{head}_head")(states[rows]), values[rows], known[rows])
    return total


def set_pooling(model, config: dict) -> None:
    """Give model fresh pooled heads of the refit's shape, so that its state sums follow the refit's pooling."""
    settings = config["train"]["pooled_heads"]
    model.replace_pooled_heads(settings.get("hidden", 512), settings.get("depth", 2), settings.get("dropout", 0.3),
                               settings.get("pooling", "final"))


def fit_pooled_heads(model, train, validation, meta: dict, config: dict, seed: int,
                     states: torch.Tensor | None = None, seconds_states: float = 0.0) -> dict:
    """Replace the pooled heads of model with MLPs fitted on frozen pooled states of the training
    proteins `train` (see pooled_head_proteins), and return a summary for the manifest.

    `states`, when given, are the pooled states of `train` under set_pooling, computed beforehand in
    `seconds_states`.
    """
    settings = config["train"]["pooled_heads"]
    hidden, depth, dropout = settings.get("hidden", 512), settings.get("depth", 2), settings.get("dropout", 0.3)
    epochs, batch_size = settings.get("epochs", 40), settings.get("batch_size", 256)
    started = time.monotonic() - seconds_states

    pooling = settings.get("pooling", "final")
    max_tokens = config["eval"]["eval_length"]
    torch.manual_seed(seed)
    set_pooling(model, config)
    processes, threads = processes_of(config)
    if states is None:
        states = pooled_states(model, train, max_tokens, processes=processes, threads=threads)
    validation_states = pooled_states(model, validation, max_tokens, processes=processes, threads=threads)
    targets, validation_targets = head_targets(train, meta), head_targets(validation, meta)
    seconds_states = time.monotonic() - started
    standardized = pooling != "final"
    if standardized:
        # A feature that is constant over the training proteins (a token that never occurs) keeps scale 1.
        mean, scale = states.mean(dim=0), states.std(dim=0)
        scale = torch.where(scale > 1e-6, scale, torch.ones_like(scale))
        for name in POOLED_HEADS:
            head = getattr(model, f"{name}_head")
            if head is not None:
                head[0].mean.copy_(mean)
                head[0].scale.copy_(scale)

    parameters = [p for head in POOLED_HEADS if getattr(model, f"{head}_head") is not None
                  for p in getattr(model, f"{head}_head").parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.get("lr", 1e-3), weight_decay=settings.get("weight_decay", 1e-4))
    steps_per_epoch = max(len(train) // batch_size, 1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    heads = [getattr(model, f"{head}_head") for head in targets]
    best = {"loss": float("inf"), "epoch": -1, "state": None}
    for epoch in range(epochs):
        for head in heads:
            head.train()
        order = torch.randperm(len(train), generator=generator)
        for step in range(steps_per_epoch):
            loss = heads_loss(model, states, targets, order[step * batch_size:(step + 1) * batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        for head in heads:
            head.eval()
        with torch.no_grad():
            validation_loss = heads_loss(model, validation_states, validation_targets).item()
        if validation_loss < best["loss"]:
            best = {"loss": validation_loss, "epoch": epoch,
                    "state": {name: {k: v.clone() for k, v in getattr(model, f"{name}_head").state_dict().items()}
                              for name in targets}}
        if (epoch + 1) % 5 == 0:
            log.info("pooled heads epoch %d train loss %.4f validation loss %.4f", epoch + 1, loss.item(), validation_loss)
    for name, state in best["state"].items():
        getattr(model, f"{name}_head").load_state_dict(state)

    summary = {"proteins": len(train), "validationProteins": len(validation), "heads": sorted(targets),
               "pooling": pooling, "pooledWidth": model.pooled_width(), "standardized": standardized,
               "hidden": hidden, "depth": depth, "dropout": dropout, "epochs": epochs,
               "bestEpoch": best["epoch"] + 1, "validationLoss": round(best["loss"], 4),
               "secondsPooledStates": round(seconds_states), "seconds": round(time.monotonic() - started)}
    log.info("pooled heads refitted: %s", summary)
    return summary
