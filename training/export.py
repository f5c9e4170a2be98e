"""ONNX export with ternary weights stored as int8 initializers, and an ONNX-vs-PyTorch check."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .model import PAD_ID, encode

log = logging.getLogger("training.export")

OPSET = 17


class OnnxOutputs(nn.Module):
    """Return the model's outputs as a tuple in a fixed order, as torch.onnx.export needs."""

    def __init__(self, model, output_names):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids, attention_mask):
        outputs = self.model(input_ids, attention_mask)
        return tuple(outputs[name] for name in self.output_names)


def output_names(model) -> list[str]:
    names = ["localization_logits", "go_logits"]
    if model.function_head is not None:
        names.append("function_logits")
    names.append("lm_logits")
    return names


def export_onnx(model, path: Path) -> dict:
    """Export a frozen model (see ProteinBitNet.freeze) and check that its weights stayed int8.

    Constant folding is off: it would multiply the int8 codes by their scales at export time and
    store float32 weights instead.
    """
    model.eval()
    names = output_names(model)
    wrapper = OnnxOutputs(model, names)
    input_ids = torch.tensor([encode("MKTAYIAKQRQISFVKSHFSRQ"), encode("MSTNPKPQRKTKRNTNRRPQDVKFPGG")[:23]])
    attention_mask = torch.ones_like(input_ids)
    dynamic_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    for name in names:
        dynamic_axes[name] = {0: "batch", 1: "seq"} if name == "lm_logits" else {0: "batch"}
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        wrapper, (input_ids, attention_mask), str(tmp),
        input_names=["input_ids", "attention_mask"], output_names=names,
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
    return {"outputs": names, "int8Initializers": len(int8)}


def compare_with_onnxruntime(model, path: Path, records, max_tokens: int, batch_size: int = 8) -> dict | None:
    """Run ONNX Runtime (CPU) and the frozen PyTorch model on the same padded batches.

    Returns the largest absolute difference per output, or None when onnxruntime is not importable.
    Differences are compared on real (non-pad) positions only for lm_logits.
    """
    try:
        import onnxruntime
    except ImportError:
        log.warning("onnxruntime is not importable, so the ONNX-vs-PyTorch check was skipped")
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    largest = {name: 0.0 for name in names}
    model.eval()
    for begin in range(0, len(records), batch_size):
        chunk = records[begin:begin + batch_size]
        token_lists = [encode(r["sequence"])[:max_tokens] for r in chunk]
        length = max(len(t) for t in token_lists)
        input_ids = np.full((len(chunk), length), PAD_ID, dtype=np.int64)
        attention_mask = np.zeros((len(chunk), length), dtype=np.int64)
        for row, tokens in enumerate(token_lists):
            input_ids[row, :len(tokens)] = tokens
            attention_mask[row, :len(tokens)] = 1
        onnx_outputs = dict(zip(names, session.run(names, {"input_ids": input_ids, "attention_mask": attention_mask})))
        with torch.no_grad():
            torch_outputs = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        for name in names:
            difference = np.abs(onnx_outputs[name] - torch_outputs[name].numpy())
            if name == "lm_logits":
                difference = difference[attention_mask.astype(bool)]
            largest[name] = max(largest[name], float(difference.max()))
    result = {"sequences": len(records), "onnxruntimeVersion": onnxruntime.__version__,
              "maxAbsLogitDifference": largest}
    log.info("ONNX vs PyTorch: %s", result)
    return result
