"""Rewrite the BitLinear matrix products of an exported model for float32, int8 or N-bit kernels.

The export (see export.py) stores each BitLinear weight as int8 ternary codes [N, K] and a float32
per-row scale [N, 1], and dequantizes them in the graph: Cast -> Mul -> Transpose -> MatMul. The
input of that MatMul is the LayerNorm output x fake-quantized to int8 per token:
q = clip(round(x * s), -128, 127) with s = 127 / max|x|, and x_q = x + (q / s - x).

Formats:
  float32  MatMul with the product codes * scale folded into one float32 initializer [K, N].
  int8     MatMulInteger of the int8 token values q and the int8 codes [K, N], then the int32
           sums times scale / s. The integer sums are exact, so this is the exported network up to
           float32 rounding.
  nbits2   MatMulNBits (com.microsoft) with bits=2: codes -1/0/+1 stored as 1/2/3 with zero
           point 2 and the row scale as every block's scale.
  nbits4   the same with bits=4: codes stored as 7/8/9 with zero point 8.

With accuracy_level 4, MatMulNBits quantizes its float input again to int8 per block of
block_size values along K, so its result differs from the exported network by that rounding.
With --activations kernel, the per-token fake quantization is dropped and the LayerNorm output goes
straight into MatMulNBits, which then quantizes it per block only.

Every format also floors the attention scores before each Softmax (see floor_attention_scores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger("training.quantize")

FORMATS = ("float32", "int8", "nbits2", "nbits4")
NBITS = {"nbits2": 2, "nbits4": 4}
MS_DOMAIN = "com.microsoft"


@dataclass
class ActivationQuant:
    """Names in the per-token int8 fake quantization in front of one BitLinear MatMul."""

    source: str  # LayerNorm output x
    codes: str  # q = clip(round(x * s)), float32 holding integers in [-128, 127]
    token_scale: str  # s = 127 / max|x| per token, shape [..., 1]


@dataclass
class BitLinearMatch:
    """One dequantize -> MatMul chain of the export and the weights it reads."""

    matmul: onnx.NodeProto
    prefix: str  # initializer prefix such as "model.blocks.0.qkv"
    codes: np.ndarray  # int8 [N, K], values -1/0/+1
    scale: np.ndarray  # float32 [N]
    activation: ActivationQuant | None


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def _match_activation(producers: dict[str, onnx.NodeProto], name: str) -> ActivationQuant | None:
    """Match Add(x, Sub(Div(q, s), x)), the exported form of x + (q / s - x).detach()."""
    add = producers.get(name)
    if add is None or add.op_type != "Add":
        return None
    source, residual = add.input
    sub = producers.get(residual)
    if sub is None or sub.op_type != "Sub" or sub.input[1] != source:
        return None
    div = producers.get(sub.input[0])
    if div is None or div.op_type != "Div":
        return None
    clip = producers.get(div.input[0])
    if clip is None or clip.op_type != "Clip":
        return None
    return ActivationQuant(source=source, codes=div.input[0], token_scale=div.input[1])


def find_bit_linears(model: onnx.ModelProto) -> list[BitLinearMatch]:
    """Find every MatMul whose B input is Transpose(Mul(Cast(int8 codes), float32 scale))."""
    graph = model.graph
    producers = _producers(graph)
    initializers = {init.name: init for init in graph.initializer}
    matches = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        transpose = producers.get(node.input[1])
        if transpose is None or transpose.op_type != "Transpose":
            continue
        mul = producers.get(transpose.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        cast = producers.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in initializers:
            continue
        codes_init = initializers[cast.input[0]]
        scale_init = initializers.get(mul.input[1])
        if codes_init.data_type != TensorProto.INT8 or scale_init is None:
            continue
        codes = numpy_helper.to_array(codes_init)
        scale = numpy_helper.to_array(scale_init).astype(np.float32).reshape(-1)
        if codes.ndim != 2 or scale.shape[0] != codes.shape[0]:
            raise ValueError(f"{codes_init.name}: codes {codes.shape} do not fit scale {scale.shape}")
        prefix = codes_init.name.removesuffix(".weight_codes")
        matches.append(BitLinearMatch(node, prefix, codes, scale, _match_activation(producers, node.input[0])))
    return matches


def pack_nbits(codes: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack ternary codes [N, K] as MatMulNBits weights with a zero point of 2^(bits - 1).

    Returns B (uint8 [N, k_blocks, block_size * bits / 8]), the stored zero points (uint8
    [N, ceil(k_blocks * bits / 8)]) and the number of blocks. Value j of a block sits in byte
    j * bits // 8 at bit (j * bits) % 8, lowest bits first, which is how MatMulNBits reads B. A K
    that is not a multiple of block_size is padded with the zero point, which dequantizes to 0.
    """
    if bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, not {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two of at least 16, not {block_size}")
    rows, k = codes.shape
    zero_point = 1 << (bits - 1)
    blocks = -(-k // block_size)
    padded = np.full((rows, blocks * block_size), zero_point, dtype=np.uint8)
    padded[:, :k] = (codes.astype(np.int16) + zero_point).astype(np.uint8)
    packed = _pack_bits(padded.reshape(rows, blocks, block_size), bits)
    zero_points = _pack_bits(np.full((rows, blocks), zero_point, dtype=np.uint8), bits, pad_to_byte=True)
    return packed, zero_points, np.int64(blocks)


def _pack_bits(values: np.ndarray, bits: int, pad_to_byte: bool = False) -> np.ndarray:
    """Pack the last axis of `values` (each < 2^bits) into bytes, lowest bits first."""
    per_byte = 8 // bits
    length = values.shape[-1]
    if length % per_byte:
        if not pad_to_byte:
            raise ValueError(f"{length} values do not fill whole bytes of {per_byte}")
        padding = np.zeros(values.shape[:-1] + (per_byte - length % per_byte,), dtype=np.uint8)
        values = np.concatenate([values, padding], axis=-1)
    grouped = values.reshape(values.shape[:-1] + (-1, per_byte)).astype(np.uint8)
    packed = np.zeros(grouped.shape[:-1], dtype=np.uint8)
    for index in range(per_byte):
        packed |= grouped[..., index] << (index * bits)
    return packed


def unpack_nbits(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Unpack MatMulNBits B [N, k_blocks, blob] into the stored values [N, K], inverse of pack_nbits."""
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    values = np.stack([(packed >> (index * bits)) & mask for index in range(per_byte)], axis=-1)
    return values.reshape(packed.shape[0], -1)[:, :k]


class _Rewriter:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        # Keyed by the MatMul's output name: protobuf may hand out a new Python object per access.
        self.nodes: dict[str, list[onnx.NodeProto]] = {}
        self.initializers: list[TensorProto] = []

    def replace(self, match: BitLinearMatch, nodes: list[onnx.NodeProto]) -> None:
        self.nodes[match.matmul.output[0]] = nodes

    def add_initializer(self, array: np.ndarray, name: str) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def finish(self) -> None:
        graph = self.model.graph
        rewritten = []
        for node in graph.node:
            rewritten.extend(self.nodes.get(node.output[0], [node]))
        del graph.node[:]
        graph.node.extend(rewritten)
        graph.initializer.extend(self.initializers)
        remove_unused(graph)


def remove_unused(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads, then initializers that no node reads."""
    outputs = {value.name for value in graph.output}
    while True:
        used = outputs | {name for node in graph.node for name in node.input}
        live = [node for node in graph.node if any(output in used for output in node.output)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


# Scores more than this far below their row's largest are raised to that distance before Softmax.
# exp(-40) is about 4e-18. Next to the row's largest weight (1) it is lost in float32 rounding for
# up to e^40 / 2^24 keys, about 1.4e10. It stays a normal float32 after the division by the row sum
# and the product with a value, so no operation meets a subnormal number.
SCORE_FLOOR_MARGIN = 40.0


def _softmax_axis(node: onnx.NodeProto) -> int:
    """Return a Softmax node's axis. From opset 13 on, as in the exporter's graphs, it defaults to the last one."""
    return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), -1)


def floor_attention_scores(model: onnx.ModelProto) -> int:
    """Floor the masked attention scores in front of every Softmax at the row maximum minus SCORE_FLOOR_MARGIN.

    The exporter masks a score with Where(mask, -1e9, score). onnxruntime's Softmax clamps the
    exponent of such a score at about -104, and the result is a subnormal float32 that the following
    division and the product with the values carry on. x86 cores without flush-to-zero take a
    microcode assist on subnormal operands, so the masked half of a causal score matrix made Softmax
    the slowest operator of the graph on an Intel Xeon (docs/benchmarks.md). After the floor the
    smallest weight is about 4e-18 of the row's largest, so outputs are those of the exporter's
    graph to float32 rounding.

    The mask itself becomes an Add of a float mask (0, or -1e9 where masked) that one Where per
    mask computes from the [queries, keys] condition, instead of a Where over every head's scores,
    which onnxruntime broadcasts more slowly. A masked score is then -1e9 plus the score, and the
    floor replaces it as before. The causal mask always leaves a query its own key, so no row is
    masked whole.

    Rewrites `model` in place and returns the number of Softmax nodes floored. A graph floored
    before is left as it is.
    """
    graph = model.graph
    producers = _producers(graph)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    margin, zero = "attention_score_floor_margin", "attention_mask_zero"
    nodes: list[onnx.NodeProto] = []
    additive: dict[tuple[str, str], str] = {}
    floored = 0
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Softmax" else None
        if source is not None and source.op_type == "Where" and _softmax_axis(node) in (-1, 3):
            condition, fill, raw = source.input
            if (condition, fill) not in additive:
                additive[(condition, fill)] = f"{condition}/additive_mask"
                nodes.insert(nodes.index(source), helper.make_node(
                    "Where", [condition, fill, zero], [additive[(condition, fill)]], name=f"{condition}/AdditiveMask"))
            source.op_type = "Add"
            del source.input[:]
            source.input.extend([raw, additive[(condition, fill)]])
            base = node.name or node.output[0]
            scores, row_max, floor, clamped = node.input[0], f"{base}/row_max", f"{base}/floor", f"{base}/floored"
            if opset >= 18:
                axes = f"{base}/row_max_axes"
                graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), axes))
                nodes.append(helper.make_node("ReduceMax", [scores, axes], [row_max], name=f"{base}/RowMax", keepdims=1))
            else:
                nodes.append(helper.make_node("ReduceMax", [scores], [row_max], name=f"{base}/RowMax", axes=[-1],
                                              keepdims=1))
            nodes.append(helper.make_node("Sub", [row_max, margin], [floor], name=f"{base}/Floor"))
            nodes.append(helper.make_node("Max", [scores, floor], [clamped], name=f"{base}/FloorScores"))
            node.input[0] = clamped
            floored += 1
        nodes.append(node)
    if floored:
        graph.initializer.append(numpy_helper.from_array(np.array(SCORE_FLOOR_MARGIN, dtype=np.float32), margin))
        graph.initializer.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), zero))
        del graph.node[:]
        graph.node.extend(nodes)
    return floored


def _rewrite_float32(rewriter: _Rewriter, match: BitLinearMatch) -> None:
    weight = (match.codes.astype(np.float32) * match.scale[:, None]).T.copy()
    name = rewriter.add_initializer(weight, f"{match.prefix}.weight")
    node = match.matmul
    rewriter.replace(match, [helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)])


def _rewrite_int8(rewriter: _Rewriter, match: BitLinearMatch) -> None:
    if match.activation is None:
        raise ValueError(f"{match.prefix}: no int8 activation fake quantization in front of {match.matmul.name}")
    node = match.matmul
    base = node.name
    codes = rewriter.add_initializer(match.codes.T.copy(), f"{match.prefix}.weight_codes_t")
    scale = rewriter.add_initializer(match.scale.copy(), f"{match.prefix}.weight_row_scale")
    offset = rewriter.add_initializer(np.array(128.0, dtype=np.float32), f"{match.prefix}.activation_offset")
    zero_point = rewriter.add_initializer(np.array(128, dtype=np.uint8), f"{match.prefix}.activation_zero_point")
    # q contains integers in [-127, 127] (absmax maps to 127), so q + 128 fits uint8 exactly. A uint8
    # A with zero point 128 takes MLAS's u8s8 path, which measured about 4x faster than an int8 A
    # on AVX-512 VNNI (onnxruntime 1.31.1).
    rewriter.replace(match, [
        helper.make_node("Add", [match.activation.codes, offset], [f"{base}/q_shifted"], name=f"{base}/AddOffset"),
        helper.make_node("Cast", [f"{base}/q_shifted"], [f"{base}/q_uint8"], name=f"{base}/CastQ", to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", [f"{base}/q_uint8", codes, zero_point], [f"{base}/sum_int32"],
                         name=f"{base}/MatMulInteger"),
        helper.make_node("Cast", [f"{base}/sum_int32"], [f"{base}/sum"], name=f"{base}/CastSum", to=TensorProto.FLOAT),
        helper.make_node("Div", [f"{base}/sum", match.activation.token_scale], [f"{base}/per_token"],
                         name=f"{base}/DivTokenScale"),
        helper.make_node("Mul", [f"{base}/per_token", scale], list(node.output), name=f"{base}/MulRowScale"),
    ])


def _rewrite_nbits(rewriter: _Rewriter, match: BitLinearMatch, bits: int, block_size: int,
                   accuracy_level: int, kernel_activations: bool) -> None:
    node = match.matmul
    rows, k = match.codes.shape
    packed, zero_points, blocks = pack_nbits(match.codes, bits, block_size)
    weights = rewriter.add_initializer(packed, f"{match.prefix}.weight_q{bits}")
    scales = rewriter.add_initializer(np.repeat(match.scale[:, None], blocks, axis=1).astype(np.float32),
                                      f"{match.prefix}.weight_scales")
    zeros = rewriter.add_initializer(zero_points, f"{match.prefix}.weight_zero_points")
    source = node.input[0]
    if kernel_activations:
        if match.activation is None:
            raise ValueError(f"{match.prefix}: no activation fake quantization to drop in front of {node.name}")
        source = match.activation.source
    rewriter.replace(match, [helper.make_node(
        "MatMulNBits", [source, weights, scales, zeros], list(node.output), name=node.name, domain=MS_DOMAIN,
        K=k, N=rows, bits=bits, block_size=block_size, accuracy_level=accuracy_level,
    )])


def quantize_model(model: onnx.ModelProto, fmt: str, block_size: int = 32, accuracy_level: int = 4,
                   kernel_activations: bool = False) -> onnx.ModelProto:
    """Return a copy of `model` with every BitLinear MatMul rewritten for `fmt` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if kernel_activations and fmt not in NBITS:
        raise ValueError("--activations kernel applies to the nbits formats only")
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    matches = find_bit_linears(rewritten)
    if not matches:
        raise ValueError("no BitLinear dequantize -> MatMul chain found; was the model exported by training.export?")
    rewriter = _Rewriter(rewritten)
    for match in matches:
        if fmt == "float32":
            _rewrite_float32(rewriter, match)
        elif fmt == "int8":
            _rewrite_int8(rewriter, match)
        else:
            _rewrite_nbits(rewriter, match, NBITS[fmt], block_size, accuracy_level, kernel_activations)
    rewriter.finish()
    floored = floor_attention_scores(rewritten)
    if fmt in NBITS and not any(opset.domain == MS_DOMAIN for opset in rewritten.opset_import):
        rewritten.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    rewritten.producer_name = "training.quantize"
    log.info("rewrote %d BitLinear MatMuls for %s and floored the scores of %d Softmax nodes", len(matches), fmt, floored)
    return rewritten


def model_path(model_dir: Path) -> Path:
    """Return the exporter's graph of a model folder: the manifest's exportedOnnxFile (or onnxFile for
    folders that have only one graph), else model.onnx."""
    manifest = model_dir / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text())
        return model_dir / entries.get("exportedOnnxFile", entries.get("onnxFile", "model.onnx"))
    return model_dir / "model.onnx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="model folder with manifest.json and its ONNX graph")
    parser.add_argument("--format", required=True, choices=FORMATS, help="kernel of the BitLinear matrix products")
    parser.add_argument("--out", type=Path, help="output file (default: MODEL_DIR/model.FORMAT.onnx)")
    parser.add_argument("--block-size", type=int, default=32, help="MatMulNBits block size along K (default 32)")
    parser.add_argument("--accuracy-level", type=int, default=4, choices=(0, 1, 2, 3, 4),
                        help="MatMulNBits accuracy_level; 4 computes in int8 (default 4)")
    parser.add_argument("--activations", choices=("keep", "kernel"), default="keep",
                        help="nbits formats: keep the per-token int8 fake quantization (keep), or drop it and "
                             "let MatMulNBits quantize per block (kernel); default keep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    source = model_path(args.model_dir)
    if not source.is_file():
        parser.error(f"model graph not found: {source}")
    out = args.out or args.model_dir / f"model.{args.format}.onnx"
    try:
        rewritten = quantize_model(onnx.load(str(source)), args.format, args.block_size, args.accuracy_level,
                                   args.activations == "kernel")
    except ValueError as err:
        print(f"error: {source}: {err}", file=sys.stderr)
        return 1
    onnx.checker.check_model(rewritten)
    onnx.save(rewritten, str(out))
    log.info("wrote %s (%d bytes)", out, out.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
