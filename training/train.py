"""Multi-task quantization-aware training loop with a wall-clock budget."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .domains import residue_labels
from .model import FLOAT, INT8, PAD_ID, TERNARY, ProteinBitNet, count_parameters, encode

log = logging.getLogger("training.train")


def crop_tokens(tokens: list[int], length: int, rng: random.Random) -> tuple[list[int], int]:
    """Return at most `length` tokens, <bos> followed by a random window of the residues, and the
    0-based index of the window's first residue."""
    if len(tokens) <= length:
        return tokens, 0
    residues = tokens[1:]
    start = rng.randrange(0, len(residues) - (length - 1) + 1)
    return tokens[:1] + residues[start:start + length - 1], start


def make_batch(records, token_lists, go_size: int, localization_size: int, function_size: int,
               offsets: list[int] | None = None, domain_families: list[str] | None = None):
    """Pad token lists on the right and stack the labels with per-row masks for the optional heads.

    Domain targets are per token: position 0 (<bos>) and padding are ignored (-100), a residue
    outside every domain is 0 and a residue inside family i is 1 + i.
    """
    length = max(len(t) for t in token_lists)
    batch = len(records)
    input_ids = torch.full((batch, length), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        input_ids[row, :len(tokens)] = torch.tensor(tokens)
        attention_mask[row, :len(tokens)] = 1
    localization = torch.zeros((batch, localization_size))
    localization_mask = torch.zeros(batch)
    function = torch.zeros((batch, max(function_size, 1)))
    function_mask = torch.zeros(batch)
    go = torch.zeros((batch, go_size))
    for row, record in enumerate(records):
        if record["localization"]:
            localization[row] = torch.tensor(record["localization"], dtype=torch.float32)
            localization_mask[row] = 1
        if function_size and record["function"]:
            function[row] = torch.tensor(record["function"], dtype=torch.float32)
            function_mask[row] = 1
        go[row] = torch.tensor(record["go"], dtype=torch.float32)
    domains = torch.full((batch, length), -100, dtype=torch.long)
    if domain_families:
        family_index = {family: i for i, family in enumerate(domain_families)}
        for row, (record, tokens) in enumerate(zip(records, token_lists)):
            offset = offsets[row] if offsets else 0
            labels = residue_labels(len(record["sequence"]), record.get("domains") or [], family_index)
            window = labels[offset:offset + len(tokens) - 1]
            domains[row, 1:1 + len(window)] = torch.tensor(window, dtype=torch.long)
    return {
        "domains": domains,
        "input_ids": input_ids, "attention_mask": attention_mask,
        "localization": localization, "localization_mask": localization_mask,
        "function": function, "function_mask": function_mask,
        "go": go, "go_aspects": [r["goAspects"] for r in records],
    }


def go_label_mask(aspects_per_row: list[str], label_aspects: list[str], device=None) -> torch.Tensor:
    """Return 1 where the protein has annotations in the label's aspect (else the label is unknown)."""
    mask = torch.zeros((len(aspects_per_row), len(label_aspects)), device=device)
    for row, aspects in enumerate(aspects_per_row):
        for column, aspect in enumerate(label_aspects):
            if aspect in aspects:
                mask[row, column] = 1
    return mask


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the entries where mask is 1 (0 when there are none)."""
    if mask.sum() == 0:
        return logits.sum() * 0.0
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (losses * mask).sum() / mask.sum()


def compute_losses(model, batch, label_aspects):
    outputs = model(batch["input_ids"], batch["attention_mask"])
    lm_logits = outputs["lm_logits"][:, :-1]
    targets = batch["input_ids"][:, 1:]
    losses = {
        "lm": F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID),
        "localization": masked_bce(
            outputs["localization_logits"], batch["localization"],
            batch["localization_mask"][:, None].expand_as(batch["localization"])),
        "go": masked_bce(outputs["go_logits"], batch["go"], go_label_mask(batch["go_aspects"], label_aspects, batch["go"].device)),
    }
    if "function_logits" in outputs:
        losses["function"] = masked_bce(
            outputs["function_logits"], batch["function"],
            batch["function_mask"][:, None].expand_as(batch["function"]))
    if "domain_logits" in outputs:
        domain_logits = outputs["domain_logits"]
        losses["domain"] = F.cross_entropy(domain_logits.reshape(-1, domain_logits.shape[-1]),
                                           batch["domains"].reshape(-1), ignore_index=-100)
    return losses


def quantization_mode(progress: float, config: dict) -> str:
    """Weight mode at this point of the run; a full-precision run stays in float32 throughout."""
    if config.get("full_precision"):
        return FLOAT
    if progress >= config["ternary_from"]:
        return TERNARY
    if progress >= config["int8_from"]:
        return INT8
    return FLOAT


def learning_rate(step: int, progress: float, config: dict) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to 5 % of lr over the run's progress."""
    if step < config["warmup_steps"]:
        return config["lr"] * (step + 1) / config["warmup_steps"]
    return config["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def build_model(model_config: dict, meta: dict) -> ProteinBitNet:
    return ProteinBitNet(
        go_labels=len(meta["goLabels"]),
        localization_labels=len(meta["localizationLabels"]),
        function_labels=len(meta["functionLabels"]),
        domain_labels=len(meta.get("domainFamilies", [])),
        **model_config,
    )


def train(config: dict, labels_path: Path, out_dir: Path, wall_seconds: float | None = None) -> dict:
    """Train and save the final checkpoint in out_dir; return a summary for the manifest.

    Progress is max(step / max_steps, elapsed / wall_seconds), so a run stopped by the wall-clock
    budget still goes through the whole float32 -> int8 -> ternary schedule and LR decay.
    """
    train_config = config["train"]
    seed = config["seed"]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    torch.set_num_threads(train_config["threads"])
    with open(labels_path) as handle:
        dataset = json.load(handle)
    meta = dataset["meta"]
    records = [r for r in dataset["records"] if r["split"] == "train"]
    tokens = [encode(r["sequence"]) for r in records]
    device = torch.device(train_config.get("device", "cpu"))
    model = build_model(config["model"], meta).to(device)
    parameters = count_parameters(model)
    log.info("model has %d parameters; %d training sequences", parameters, len(records))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train_config["lr"], betas=(0.9, 0.98),
    )
    budget = wall_seconds if wall_seconds is not None else train_config["wall_seconds"]
    max_steps = train_config["max_steps"]
    weights = train_config["loss_weights"]
    out_dir.mkdir(parents=True, exist_ok=True)
    order: list[int] = []
    start = time.monotonic()
    step = 0
    mode = None
    sequences_seen = 0
    model.train()
    while True:
        elapsed = time.monotonic() - start
        progress = max(step / max_steps, elapsed / budget)
        if progress >= 1.0:
            break
        new_mode = quantization_mode(progress, train_config)
        if new_mode != mode:
            log.info("step %d: weight quantization -> %s", step, new_mode)
            model.set_quantization(new_mode)
            mode = new_mode
        if len(order) < train_config["batch_size"]:
            fresh = list(range(len(records)))
            rng.shuffle(fresh)
            order.extend(fresh)
        indices = [order.pop() for _ in range(train_config["batch_size"])]
        crop = train_config["crop_length"]
        if rng.random() < train_config["long_crop_fraction"]:
            crop = train_config["long_crop_length"]
        crops = [crop_tokens(tokens[i], crop, rng) for i in indices]
        batch = make_batch([records[i] for i in indices], [c[0] for c in crops],
                           len(meta["goLabels"]), len(meta["localizationLabels"]), len(meta["functionLabels"]),
                           [c[1] for c in crops], meta.get("domainFamilies"))
        batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        lr = learning_rate(step, progress, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = compute_losses(model, batch, meta["goAspects"])
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_config["clip_norm"])
        optimizer.step()
        step += 1
        sequences_seen += len(indices)
        if step % train_config["log_every"] == 0 or step == 1:
            parts = " ".join(f"{name}={value.item():.4f}" for name, value in losses.items())
            log.info("step %d progress %.3f mode %s lr %.2e loss %.4f %s grad_norm %.2f elapsed %.0fs",
                     step, progress, mode, lr, total.item(), parts, grad_norm.item(), time.monotonic() - start)
        if step % train_config["checkpoint_every"] == 0:
            torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "step": step, "mode": mode},
                       out_dir / "checkpoint.pt")
    wall = time.monotonic() - start
    final_mode = FLOAT if train_config.get("full_precision") else TERNARY
    model.set_quantization(final_mode)
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "step": step, "mode": final_mode},
               out_dir / "final.pt")
    summary = {"steps": step, "wallSeconds": round(wall), "sequencesSeen": sequences_seen,
               "parameters": parameters, "finalMode": mode, "maxSteps": max_steps,
               # None when --max-steps turned the wall-clock budget off.
               "wallBudgetSeconds": budget if math.isfinite(budget) else None,
               "stoppedBy": "max_steps" if step >= max_steps else "wall_seconds"}
    log.info("training finished: %s", summary)
    with open(out_dir / "train_summary.json", "w") as handle:
        json.dump(summary, handle)
    return summary
