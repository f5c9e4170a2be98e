"""Multi-task quantization-aware training loop with a wall-clock budget."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .domains import residue_labels
from .model import FLOAT, INT8, PAD_ID, TERNARY, ProteinBitNet, count_parameters, encode

log = logging.getLogger("training.train")

# File name of the per-step progress that train() writes next to final.pt.
PROGRESS_FILE = "progress.json"


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
    names = sorted(set(label_aspects))
    annotated = torch.zeros((len(aspects_per_row), len(names)))
    for row, aspects in enumerate(aspects_per_row):
        for column, name in enumerate(names):
            if name in aspects:
                annotated[row, column] = 1
    columns = torch.tensor([names.index(aspect) for aspect in label_aspects], dtype=torch.long)
    return annotated[:, columns].to(device)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the entries where mask is 1 (0 when there are none)."""
    if mask.sum() == 0:
        return logits.sum() * 0.0
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (losses * mask).sum() / mask.sum()


def loss_denominators(batch, label_aspects) -> dict[str, torch.Tensor]:
    """Count, over the whole batch, the entries that each head's mean loss averages over."""
    go_mask = go_label_mask(batch["go_aspects"], label_aspects, batch["go"].device)
    counts = {
        "lm": (batch["input_ids"][:, 1:] != PAD_ID).sum(),
        "localization": batch["localization_mask"].sum() * batch["localization"].shape[1],
        "go": go_mask.sum(),
        "function": batch["function_mask"].sum() * batch["function"].shape[1],
        "domain": (batch["domains"] != -100).sum(),
    }
    return {name: count.to(torch.float32) for name, count in counts.items()}


def batch_rows(batch, rows: slice):
    """Return the rows of a batch, cut after the last column that one of them uses.

    Attention is causal and pads sit on the right, so dropping pad columns leaves every real
    position's outputs unchanged.
    """
    part = {key: value[rows] for key, value in batch.items()}
    used = int(part["attention_mask"].sum(dim=1).max()) if len(part["attention_mask"]) else 0
    for key in ("input_ids", "attention_mask", "domains"):
        part[key] = part[key][:, :max(used, 1)]
    return part


def summed_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * mask).sum()


def compute_losses(model, batch, label_aspects, rows: slice | None = None):
    """Return each head's loss: the mean over the whole batch of the entries that it counts.

    With `rows`, the model runs on those rows only, and each loss is their share of the whole
    batch's mean: a sum over the rows divided by the whole batch's count. The shares of all row
    ranges therefore add up to the loss of the whole batch. A head without any counted entry in
    the batch has loss 0.
    """
    denominators = loss_denominators(batch, label_aspects)
    part = batch if rows is None else batch_rows(batch, rows)
    outputs = model(part["input_ids"], part["attention_mask"])

    def share(total: torch.Tensor, name: str) -> torch.Tensor:
        return total / denominators[name] if denominators[name] > 0 else total * 0.0

    lm_logits = outputs["lm_logits"][:, :-1]
    targets = part["input_ids"][:, 1:]
    localization_mask = part["localization_mask"][:, None].expand_as(part["localization"])
    losses = {
        "lm": share(F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), targets.reshape(-1),
                                    ignore_index=PAD_ID, reduction="sum"), "lm"),
        "localization": share(summed_bce(outputs["localization_logits"], part["localization"], localization_mask),
                              "localization"),
        "go": share(summed_bce(outputs["go_logits"], part["go"],
                               go_label_mask(part["go_aspects"], label_aspects, part["go"].device)), "go"),
    }
    if "function_logits" in outputs:
        function_mask = part["function_mask"][:, None].expand_as(part["function"])
        losses["function"] = share(summed_bce(outputs["function_logits"], part["function"], function_mask), "function")
    if "domain_logits" in outputs:
        domain_logits = outputs["domain_logits"]
        losses["domain"] = share(F.cross_entropy(domain_logits.reshape(-1, domain_logits.shape[-1]),
                                                 part["domains"].reshape(-1), ignore_index=-100, reduction="sum"),
                                 "domain")
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


def label_order(meta: dict) -> dict[str, list[str]]:
    """Return the labels behind each head's outputs, in output order.

    Checkpoints keep it, so a network is never read against labels in another order.
    """
    return {"go": list(meta["goLabels"]), "localization": list(meta["localizationLabels"]),
            "function": list(meta["functionLabels"]),
            "domain": list(meta.get("domainFamilies", []))}


def build_model(model_config: dict, meta: dict) -> ProteinBitNet:
    return ProteinBitNet(
        go_labels=len(meta["goLabels"]),
        localization_labels=len(meta["localizationLabels"]),
        function_labels=len(meta["functionLabels"]),
        domain_labels=len(meta.get("domainFamilies", [])),
        **model_config,
    )


def train(config: dict, labels_path: Path, out_dir: Path, wall_seconds: float | None = None,
          progress_schedule: list[float] | None = None) -> dict:
    """Train and save the final checkpoint in out_dir; return a summary for the manifest.

    Progress is max(step / max_steps, elapsed / wall_seconds), so a run stopped by the wall-clock
    budget still goes through the whole float32 -> int8 -> ternary schedule and LR decay. The
    progress of every step is written to out_dir/progress.json. Given `progress_schedule` (such a
    file's list, see read_progress_schedule), step i takes its progress from entry i instead, and
    the run ends after the last entry, so a twin gets the learning rates, step for step, of the
    run that wrote the file.

    With `train.processes` N > 1 the run is data-parallel: N processes share `train.threads`, each
    builds the same batch, runs the forward and backward pass of its share of the rows and adds its
    gradients to the others' (gloo over the loopback interface). Each loss is the whole batch's
    mean, so a step updates the weights as one process would, up to float rounding.
    """
    processes = config["train"].get("processes", 1)
    if processes <= 1:
        return _train_process(0, 1, config, labels_path, out_dir, wall_seconds, progress_schedule)
    if config["train"]["batch_size"] < processes:
        raise ValueError(f"train.batch_size {config['train']['batch_size']} is smaller than train.processes {processes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as rendezvous:
        torch.multiprocessing.spawn(_train_worker, nprocs=processes, join=True,
                                    args=(processes, config, labels_path, out_dir, wall_seconds,
                                          Path(rendezvous) / "init", progress_schedule))
    return json.loads((out_dir / "train_summary.json").read_text())


def _train_worker(rank: int, world: int, config: dict, labels_path: Path, out_dir: Path,
                  wall_seconds: float | None, rendezvous: Path, progress_schedule: list[float] | None) -> None:
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    logging.getLogger("torch.distributed").setLevel(logging.WARNING)
    # Gloo picks its network interface from the host name unless set, but the processes share one machine.
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        _train_process(rank, world, config, labels_path, out_dir, wall_seconds, progress_schedule)
    finally:
        dist.destroy_process_group()


def _sum_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace each gradient with its sum over the processes, in one all-reduce."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.grad = flat[offset:offset + size].view_as(parameter).clone()
        offset += size


def _check_replicas(parameters: list[torch.nn.Parameter]) -> None:
    """Raise unless every process ended with the first process's weights."""
    flat = torch.cat([p.detach().reshape(-1) for p in parameters])
    first = flat.clone()
    dist.broadcast(first, 0)
    difference = float((flat - first).abs().max())
    if difference > 0:
        raise RuntimeError(f"data-parallel processes diverged: largest weight difference {difference:g}")


def _train_process(rank: int, world: int, config: dict, labels_path: Path, out_dir: Path,
                   wall_seconds: float | None, progress_schedule: list[float] | None = None) -> dict:
    train_config = config["train"]
    seed = config["seed"]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    torch.set_num_threads(max(train_config["threads"] // world, 1))
    with open(labels_path) as handle:
        dataset = json.load(handle)
    meta = dataset["meta"]
    records = [r for r in dataset["records"] if r["split"] == "train"]
    tokens = [encode(r["sequence"]) for r in records]
    device = torch.device(train_config.get("device", "cpu"))
    model = build_model(config["model"], meta).to(device)
    parameters = count_parameters(model)
    log.info("model has %d parameters; %d training sequences; %d process(es) of %d thread(s)",
             parameters, len(records), world, torch.get_num_threads())

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
    progress_log: list[float] = []
    model.train()
    batch_size = train_config["batch_size"]
    # This process's share of each batch's rows.
    rows = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
    trainable = list(model.parameters())
    while True:
        elapsed = time.monotonic() - start
        if progress_schedule is not None:
            progress = progress_schedule[step] if step < len(progress_schedule) else 1.0
        else:
            progress = max(step / max_steps, elapsed / budget)
        if world > 1:
            # Every process follows the first one's clock, so all of them stop and switch modes at the same step.
            shared = torch.tensor([progress], dtype=torch.float64)
            dist.broadcast(shared, 0)
            progress = float(shared)
        if progress >= 1.0:
            break
        progress_log.append(progress)
        new_mode = quantization_mode(progress, train_config)
        if new_mode != mode:
            log.info("step %d: weight quantization -> %s", step, new_mode)
            model.set_quantization(new_mode)
            mode = new_mode
        if len(order) < batch_size:
            fresh = list(range(len(records)))
            rng.shuffle(fresh)
            order.extend(fresh)
        indices = [order.pop() for _ in range(batch_size)]
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
        losses = compute_losses(model, batch, meta["goAspects"], rows if world > 1 else None)
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if world > 1:
            _sum_gradients(trainable)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_config["clip_norm"])
        optimizer.step()
        step += 1
        sequences_seen += len(indices)
        if step % train_config["log_every"] == 0 or step == 1:
            values = torch.stack([total.detach()] + [value.detach() for value in losses.values()])
            if world > 1:
                dist.all_reduce(values)
            parts = " ".join(f"{name}={value:.4f}" for name, value in zip(losses, values[1:].tolist()))
            log.info("step %d progress %.3f mode %s lr %.2e loss %.4f %s grad_norm %.2f elapsed %.0fs",
                     step, progress, mode, lr, float(values[0]), parts, grad_norm.item(), time.monotonic() - start)
        if step % train_config["checkpoint_every"] == 0 and rank == 0:
            torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "step": step, "mode": mode,
                        "labels": label_order(meta)},
                       out_dir / "checkpoint.pt")
    wall = time.monotonic() - start
    if world > 1:
        _check_replicas(trainable)
    if rank != 0:
        return {}
    final_mode = FLOAT if train_config.get("full_precision") else TERNARY
    model.set_quantization(final_mode)
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "step": step, "mode": final_mode,
                "labels": label_order(meta)},
               out_dir / "final.pt")
    summary = {"steps": step, "wallSeconds": round(wall), "sequencesSeen": sequences_seen,
               "parameters": parameters, "finalMode": mode, "maxSteps": max_steps,
               # None when --max-steps or --progress-from turned the wall-clock budget off.
               "wallBudgetSeconds": budget if math.isfinite(budget) else None,
               "stoppedBy": ("progress_schedule" if progress_schedule is not None
                             else "max_steps" if step >= max_steps else "wall_seconds"),
               "processes": world, "threadsPerProcess": torch.get_num_threads()}
    # build imports this module, so its machine text is imported here, at the end of a run.
    from .build import machine_description
    summary["machine"] = machine_description(world, torch.get_num_threads())
    log.info("training finished: %s", summary)
    with open(out_dir / "train_summary.json", "w") as handle:
        json.dump(summary, handle)
    (out_dir / PROGRESS_FILE).write_text(json.dumps({"steps": step, "progress": progress_log}))
    return summary


def read_progress_schedule(path: Path) -> list[float]:
    """Return the per-step progress that a run wrote to `path` (its progress.json), checked.

    Raise ValueError unless it is a non-empty, non-decreasing list of numbers in [0, 1) with one
    entry per step of that run.
    """
    document = json.loads(Path(path).read_text())
    progress = document.get("progress") if isinstance(document, dict) else None
    if not isinstance(progress, list) or not progress:
        raise ValueError(f"{path}: missing or empty progress list")
    if document.get("steps") != len(progress):
        raise ValueError(f"{path}: {len(progress)} progress entries for {document.get('steps')} steps")
    for index, value in enumerate(progress):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{path}: progress of step {index} is {value!r}, not a number in [0, 1)")
        if index and value < progress[index - 1]:
            raise ValueError(f"{path}: progress decreases at step {index}")
    return [float(value) for value in progress]
