"""ONNX export with ternary weights stored as int8 initializers, and an ONNX-vs-PyTorch check."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .model import encode

log = logging.getLogger("training.export")

OPSET = 17


class OnnxOutputs(nn.Module):
    """Flatten the model's inputs and outputs into the fixed order torch.onnx.export needs.

    Inputs: input_ids, attention_mask, then past_key_<i> and past_value_<i> per layer
    ([batch, heads, past, head_dim]) and past_state_sum ([batch, d_model]). Outputs: the heads, then
    present_key_<i>, present_value_<i> (past and current positions) and state_sum.
    """

    def __init__(self, model, output_names):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids, attention_mask, *past_and_sum):
        layers = len(self.model.blocks)
        past = [(past_and_sum[2 * i], past_and_sum[2 * i + 1]) for i in range(layers)]
        outputs = self.model(input_ids, attention_mask, past, past_and_sum[2 * layers])
        flat = [outputs[name] for name in self.output_names]
        for key, value in outputs["present"]:
            flat.extend([key, value])
        flat.append(outputs["state_sum"])
        return tuple(flat)


def output_names(model) -> list[str]:
    """Names of the head outputs in graph order."""
    names = ["localization_logits", "go_logits"]
    if model.function_head is not None:
        names.append("function_logits")
    if model.domain_head is not None:
        names.append("domain_logits")
    names.append("lm_logits")
    return names


def cache_names(model) -> tuple[list[str], list[str]]:
    """Names of the prefix-cache inputs and outputs."""
    inputs, outputs = [], []
    for index in range(len(model.blocks)):
        inputs += [f"past_key_{index}", f"past_value_{index}"]
        outputs += [f"present_key_{index}", f"present_value_{index}"]
    return inputs + ["past_state_sum"], outputs + ["state_sum"]


def export_onnx(model, path: Path) -> dict:
    """Export a frozen model (see ProteinBitNet.freeze) and check that its weights stayed int8.

    Constant folding is off: it would multiply the int8 codes by their scales at export time and
    store float32 weights instead. The trace uses a non-empty past so that the graph keeps the past
    length symbolic; a zero-length past is valid input.
    """
    model.eval()
    names = output_names(model)
    past_inputs, present_outputs = cache_names(model)
    wrapper = OnnxOutputs(model, names)
    input_ids = torch.tensor([encode("MKTAYIAKQRQISFVKSHFSRQ")[1:], encode("MSTNPKPQRKTKRNTNRRPQDVKFPGG")[1:23]])
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        prefix = torch.tensor([encode("MSEQ"), encode("MKVL")])
        prefix_outputs = model(prefix, torch.ones_like(prefix))
    past = [tensor for pair in prefix_outputs["present"] for tensor in pair] + [prefix_outputs["state_sum"]]
    dynamic_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    for name in names:
        dynamic_axes[name] = {0: "batch", 1: "seq"} if name in ("lm_logits", "domain_logits") else {0: "batch"}
    for name in past_inputs[:-1]:
        dynamic_axes[name] = {0: "batch", 2: "past"}
    for name in present_outputs[:-1]:
        dynamic_axes[name] = {0: "batch", 2: "total"}
    dynamic_axes["past_state_sum"] = {0: "batch"}
    dynamic_axes["state_sum"] = {0: "batch"}
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        wrapper, (input_ids, attention_mask, *past), str(tmp),
        input_names=["input_ids", "attention_mask"] + past_inputs, output_names=names + present_outputs,
        dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=False,
    )
    graph = onnx.load(str(tmp))
    onnx.checker.check_model(graph)
    int8 = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    values = set()
    for initializer in int8:
        values |= set(np.unique(numpy_helper.to_array(initializer)).tolist())
    expected = len(model.bit_linears())
    if len(int8) != expected or not values <= {-1, 0, 1}:
        raise RuntimeError(f"export stored {len(int8)} int8 weight tensors with values {sorted(values)}; "
                           f"expected {expected} tensors of -1/0/+1")
    tmp.rename(path)
    log.info("exported %s (%d bytes, %d int8 ternary weight tensors)", path, path.stat().st_size, len(int8))
    return {"outputs": names, "int8Initializers": len(int8), "pastInputs": past_inputs, "presentOutputs": present_outputs}


def reference_entry(record, tokens: list[int], outputs: dict, positions: int | None) -> dict:
    """Return one sequence's reference entry from its outputs (name -> array of one sequence, no padding)."""
    entry = {"accession": record.get("accession"), "inputIds": tokens, "outputs": {}}
    for name, values in outputs.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 2 and positions is not None:
            values = values[:positions]
        entry["outputs"][name] = np.round(values, 5).tolist()
    return entry


def reference_outputs(model, records, max_tokens: int, positions: int | None = None) -> dict:
    """Run the frozen PyTorch model on each record alone and return its inputs and outputs.

    `bitnet-edge model verify` runs the same tokens through onnxruntime-node and reports the
    largest difference per output. Per-residue outputs keep their first `positions` positions (all
    when None); values are rounded to 1e-5, well below the differences of interest.
    """
    model.eval()
    names = output_names(model)
    entries = []
    with torch.no_grad():
        for record in records:
            tokens = encode(record["sequence"])[:max_tokens]
            input_ids = torch.tensor([tokens])
            outputs = model(input_ids, torch.ones_like(input_ids))
            entries.append(reference_entry(record, tokens, {name: outputs[name][0].numpy() for name in names}, positions))
    return reference_document(entries, positions)


def reference_document(entries: list[dict], positions: int | None) -> dict:
    return {"formatVersion": 1, "torchVersion": torch.__version__, "positions": positions, "sequences": entries}


def write_reference(model, path: Path, records, max_tokens: int, positions: int | None = None) -> None:
    write_reference_document(path, reference_outputs(model, records, max_tokens, positions))


def write_reference_document(path: Path, document: dict) -> None:
    with open(path, "w") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.write("\n")
    log.info("wrote PyTorch reference outputs of %d sequences to %s", len(document["sequences"]), path)
