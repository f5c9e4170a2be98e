"""Put the training checkpoints of an exported model back into a work folder.

The exporter's graph (`model.onnx`) stores every weight of the frozen network: the ternary codes
and row scales of each BitLinear, the norms, the embedding and all heads. From it and the
manifest this module writes `final.pt` (the frozen network without the refitted heads),
`domain_head.pt`, `pooled_heads.pt` and `train_summary.json`, the files that the build's
train, domain_head and pooled_heads steps leave. Later steps, for example a new fit of the pooled
heads, then run on exactly the network that was shipped, without training it again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from .model import POOLED_HEADS
from .train import build_model, label_order

log = logging.getLogger("training.restore")

# Parameter names of the heads that the refit steps replace; a restored final.pt leaves them out.
REFITTED_HEADS = ("domain_head.",) + tuple(f"{head}_head." for head in POOLED_HEADS)
EXPORTED_PREFIX = "model."


def exported_state(onnx_path: Path) -> dict[str, torch.Tensor]:
    """Return the model's state dict as stored in the initializers of the exporter's graph."""
    graph = onnx.load(str(onnx_path)).graph
    return {initializer.name[len(EXPORTED_PREFIX):]: torch.from_numpy(numpy_helper.to_array(initializer).copy())
            for initializer in graph.initializer if initializer.name.startswith(EXPORTED_PREFIX)}


def share_standardization(state: dict[str, torch.Tensor], model) -> None:
    """Give every pooled head the standardization buffers that the exporter stored once.

    The refit sets the same mean and scale in the Standardize of each pooled head, and the exporter
    keeps one initializer for identical tensors, so the graph names them after one head only.
    """
    heads = [head for head in POOLED_HEADS if getattr(model, f"{head}_head", None) is not None]
    # Heads without a Standardize have no such buffers in the graph, so nothing is copied for them.
    for buffer in ("mean", "scale"):
        names = [f"{head}_head.0.{buffer}" for head in heads]
        stored = [state[name] for name in names if name in state]
        if not stored:
            continue
        for name in names:
            state.setdefault(name, stored[0])


def check_label_order(saved: dict[str, list[str]], meta: dict, source) -> None:
    """Raise ValueError when a network's labels (`label_order` of its training data) differ from meta's in order."""
    expected = label_order(meta)
    for head, labels in saved.items():
        current = expected.get(head, [])
        if labels == current:
            continue
        position = next((i for i, (a, b) in enumerate(zip(labels, current)) if a != b), min(len(labels), len(current)))
        trained_label = labels[position] if position < len(labels) else "nothing"
        current_label = current[position] if position < len(current) else "nothing"
        raise ValueError(f"{source} was trained on other {head} labels: output {position} is {trained_label}, "
                         f"the labels file has {current_label} there ({len(labels)} against {len(current)} labels). "
                         "Use the labels file it was trained on, or train again (--redo train)")


def load_network(model, checkpoint: Path, ternary: bool, meta: dict | None = None) -> None:
    """Load final.pt into model: a trained checkpoint (frozen here when ternary) or a restored frozen one.

    A restored checkpoint has no head that a refit replaces; those come from domain_head.pt and
    pooled_heads.pt (or keep their fresh initialization until a refit). With meta, the label order
    the checkpoint records must be meta's; a checkpoint written before the order was recorded is
    not checked.
    """
    saved = torch.load(checkpoint)
    if meta is not None and "labels" in saved:
        check_label_order(saved["labels"], meta, checkpoint)
    if not saved.get("frozen"):
        model.load_state_dict(saved["model"])
        if ternary:
            model.set_quantization("ternary")
            model.freeze()
        return
    if not ternary:
        raise ValueError(f"{checkpoint} contains a frozen ternary network, not a full-precision one")
    model.set_quantization("ternary")
    model.freeze()
    missing, unexpected = model.load_state_dict(saved["model"], strict=False)
    missing = [name for name in missing if not name.startswith(REFITTED_HEADS)]
    if missing or unexpected:
        raise ValueError(f"{checkpoint} does not fit the configured network: missing {missing}, unexpected {unexpected}")


def restore_checkpoints(config: dict, meta: dict, model_dir: Path, checkpoint_dir: Path) -> dict:
    """Write final.pt, domain_head.pt, pooled_heads.pt and train_summary.json of model_dir into checkpoint_dir."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    training = manifest.get("training", {})
    heads = manifest.get("heads", {})
    check_label_order({head: list(heads[head]["labels"]) for head in ("go", "localization", "function", "domain")
                       if head in heads}, meta, model_dir)
    model = build_model(config["model"], meta)
    model.set_quantization("ternary")
    model.freeze()
    domain, pooled = training.get("domainHeadRefit"), training.get("pooledHeadsRefit")
    if domain and model.domain_head is not None:
        model.replace_domain_head(domain["hidden"], domain["lookahead"])
    if pooled:
        model.replace_pooled_heads(pooled["hidden"], pooled["depth"], pooling=pooled.get("pooling", "final"))
    state = exported_state(model_dir / manifest.get("exportedOnnxFile", "model.onnx"))
    share_standardization(state, model)
    # Strict: every weight of the configured network must come from the file, and nothing else. The
    # exporter stores identical tensors once (an untrained LayerNorm's ones, say); a trained network
    # has none, and one left out would stop the restore here.
    model.load_state_dict(state)

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    network = {name: value for name, value in state.items() if not name.startswith(REFITTED_HEADS)}
    torch.save({"model": network, "frozen": True, "mode": "ternary", "restoredFrom": manifest["modelId"],
                "labels": label_order(meta)},
               checkpoint_dir / "final.pt")
    if domain and model.domain_head is not None:
        torch.save({"domain_head": model.domain_head.state_dict(), "hidden": domain["hidden"],
                    "lookahead": domain["lookahead"], "summary": domain}, checkpoint_dir / "domain_head.pt")
    if pooled:
        heads = {name: getattr(model, f"{name}_head").state_dict() for name in pooled["heads"]}
        torch.save({"heads": heads, "hidden": pooled["hidden"], "depth": pooled["depth"], "summary": pooled},
                   checkpoint_dir / "pooled_heads.pt")
    summary = {"steps": training.get("steps"), "wallSeconds": training.get("wallSeconds"),
               "sequencesSeen": training.get("sequencesSeen"), "finalMode": "ternary",
               "machine": training.get("machine"), "restoredFrom": manifest["modelId"],
               "trainingCommand": training.get("networkFrom", {}).get("trainingCommand", training.get("command"))}
    (checkpoint_dir / "train_summary.json").write_text(json.dumps(summary))
    log.info("restored the network and heads of %s (%s) into %s", model_dir, manifest["modelId"], checkpoint_dir)
    return summary
