"""Unit tests of the BitLinear rewrite into float32, int8 and MatMulNBits graphs."""

import tempfile
import unittest
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from training.export import export_onnx
from training.model import ProteinBitNet
from training.quantize import (
    FORMATS, SCORE_FLOOR_MARGIN, find_bit_linears, floor_attention_scores, pack_nbits, quantize_model, unpack_nbits,
)


def exported_model() -> onnx.ModelProto:
    """A one-layer model with d_model 32 and FFN 64, frozen and exported like the bundled one."""
    torch.manual_seed(0)
    model = ProteinBitNet(layers=1, d_model=32, heads=4, ffn=64, go_labels=5, localization_labels=10, function_labels=3)
    model.freeze()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path)
        return onnx.load(str(path))


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


class QuantizeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.original = exported_model()
        cls.matches = find_bit_linears(cls.original)
        cls.codes = {match.prefix: match.codes for match in cls.matches}
        cls.scales = {match.prefix: match.scale for match in cls.matches}

    def test_finds_every_bit_linear(self):
        self.assertEqual(sorted(self.codes), [f"model.blocks.0.{name}" for name in ("ffn_in", "ffn_out", "out", "qkv")])
        for match in self.matches:
            self.assertIsNotNone(match.activation, match.prefix)
            self.assertTrue(set(np.unique(match.codes).tolist()) <= {-1, 0, 1})

    def test_inputs_and_outputs_unchanged(self):
        for fmt in FORMATS:
            rewritten = quantize_model(self.original, fmt)
            onnx.checker.check_model(rewritten)
            self.assertEqual([v.name for v in rewritten.graph.input], [v.name for v in self.original.graph.input], fmt)
            self.assertEqual([v.name for v in rewritten.graph.output], [v.name for v in self.original.graph.output], fmt)

    def test_float32_folds_codes_times_scale(self):
        rewritten = quantize_model(self.original, "float32")
        weights = initializers(rewritten)
        for prefix, codes in self.codes.items():
            expected = (codes.astype(np.float32) * self.scales[prefix][:, None]).T
            np.testing.assert_array_equal(weights[f"{prefix}.weight"], expected)
            self.assertNotIn(f"{prefix}.weight_codes", weights)
        self.assertFalse([n for n in rewritten.graph.node if n.op_type == "Cast" and n.input[0].endswith("weight_codes")])

    def test_int8_stores_codes_without_float_weights(self):
        rewritten = quantize_model(self.original, "int8")
        weights = initializers(rewritten)
        for prefix, codes in self.codes.items():
            stored = weights[f"{prefix}.weight_codes_t"]
            self.assertEqual(stored.dtype, np.int8)
            np.testing.assert_array_equal(stored.T, codes)
            np.testing.assert_array_equal(weights[f"{prefix}.weight_row_scale"], self.scales[prefix])
        self.assert_no_float_bit_linear_weights(rewritten)
        kinds = [node.op_type for node in rewritten.graph.node]
        self.assertEqual(kinds.count("MatMulInteger"), len(self.codes))
        original_matmuls = sum(node.op_type == "MatMul" for node in self.original.graph.node)
        self.assertEqual(kinds.count("MatMul"), original_matmuls - len(self.codes))

    def test_nbits_packing_reproduces_codes(self):
        for fmt, bits, zero_point in (("nbits2", 2, 2), ("nbits4", 4, 8)):
            for block_size in (16, 32, 64):
                rewritten = quantize_model(self.original, fmt, block_size=block_size)
                weights = initializers(rewritten)
                nodes = {node.name: node for node in rewritten.graph.node if node.op_type == "MatMulNBits"}
                self.assertEqual(len(nodes), len(self.codes))
                for node in nodes.values():
                    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                    self.assertEqual(node.domain, "com.microsoft")
                    self.assertEqual((attributes["bits"], attributes["block_size"], attributes["accuracy_level"]), (bits, block_size, 4))
                    packed, scales, zero_points = (weights[name] for name in node.input[1:4])
                    k, n = attributes["K"], attributes["N"]
                    prefix = node.input[1].rsplit(".weight_q", 1)[0]
                    blocks = -(-k // block_size)
                    self.assertEqual(packed.dtype, np.uint8)
                    self.assertEqual(packed.shape, (n, blocks, block_size * bits // 8))
                    stored = unpack_nbits(packed, bits, k).astype(np.int16)
                    np.testing.assert_array_equal(stored - zero_point, self.codes[prefix], f"{fmt} block {block_size}")
                    np.testing.assert_array_equal(unpack_nbits(zero_points[:, None, :], bits, blocks), np.full((n, blocks), zero_point))
                    np.testing.assert_array_equal(scales, np.repeat(self.scales[prefix][:, None], blocks, axis=1))
                self.assert_no_float_bit_linear_weights(rewritten)

    def test_pack_pads_partial_block_with_zero_point(self):
        codes = np.array([[1, -1, 0, 1, -1] * 4], dtype=np.int8)  # K = 20, one full and one partial block of 16
        packed, zero_points, blocks = pack_nbits(codes, 2, 16)
        self.assertEqual(blocks, 2)
        stored = unpack_nbits(packed, 2, 32)
        np.testing.assert_array_equal(stored[:, :20].astype(np.int16) - 2, codes)
        np.testing.assert_array_equal(stored[:, 20:], np.full((1, 12), 2))
        self.assertEqual(zero_points.tolist(), [[0b1010]])

    def test_kernel_activations_drop_fake_quantization(self):
        kept = quantize_model(self.original, "nbits2")
        dropped = quantize_model(self.original, "nbits2", kernel_activations=True)
        self.assertEqual(sum(node.op_type == "Round" for node in kept.graph.node), len(self.codes))
        self.assertEqual(sum(node.op_type == "Round" for node in dropped.graph.node), 0)
        for node in dropped.graph.node:
            if node.op_type == "MatMulNBits":
                self.assertTrue(node.input[0].endswith("LayerNormalization_output_0"), node.input[0])

    def test_rejects_unknown_format_and_block_size(self):
        with self.assertRaises(ValueError):
            quantize_model(self.original, "int4")
        with self.assertRaises(ValueError):
            quantize_model(self.original, "nbits2", block_size=24)
        with self.assertRaises(ValueError):
            quantize_model(self.original, "int8", kernel_activations=True)

    def test_formats_floor_masked_scores(self):
        for fmt in FORMATS:
            rewritten = quantize_model(self.original, fmt)
            producers = {output: node for node in rewritten.graph.node for output in node.output}
            softmaxes = [node for node in rewritten.graph.node if node.op_type == "Softmax"]
            self.assertEqual(len(softmaxes), 1, fmt)
            floor = producers[softmaxes[0].input[0]]
            self.assertEqual(floor.op_type, "Max", fmt)
            masked, lowest = (producers[name] for name in floor.input)
            self.assertEqual(masked.op_type, "Add", fmt)
            additive = producers[masked.input[1]]
            self.assertEqual(additive.op_type, "Where", fmt)
            self.assertEqual(float(initializers(rewritten)[additive.input[2]]), 0.0, fmt)
            self.assertEqual(lowest.op_type, "Sub", fmt)
            row_max = producers[lowest.input[0]]
            self.assertEqual((row_max.op_type, list(row_max.input)), ("ReduceMax", [masked.output[0]]), fmt)
            self.assertEqual(float(initializers(rewritten)[lowest.input[1]]), SCORE_FLOOR_MARGIN, fmt)
            # A second pass finds nothing left to floor.
            self.assertEqual(floor_attention_scores(rewritten), 0, fmt)

    def test_floor_leaves_no_subnormal(self):
        # The rewritten subgraph, computed as onnxruntime computes it in float32, against the
        # exporter's Where(mask, -1e9, score) on a causal score matrix with real scores spread
        # down to 60 below the row maximum.
        rng = np.random.default_rng(3)
        n = 300
        scores = (rng.standard_normal((4, n, n)) * 20).astype(np.float32)
        mask = np.triu(np.ones((n, n), dtype=bool), k=1)
        masked = np.where(mask, np.float32(-1e9), scores)
        added = scores + np.where(mask, np.float32(-1e9), np.float32(0.0))
        floored = np.maximum(added, added.max(axis=-1, keepdims=True) - np.float32(SCORE_FLOOR_MARGIN))

        def softmax(x):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        weights, unfloored = softmax(floored), softmax(masked)
        # Only weights below exp(-margin) of the row's largest move, and by less than that.
        self.assertLess(float(np.abs(weights - unfloored).max()), float(np.exp(-SCORE_FLOOR_MARGIN)))
        self.assertLess(float(np.abs(weights - softmax(masked.astype(np.float64))).max()), 1e-6)
        tiny = np.finfo(np.float32).tiny
        self.assertFalse(((weights != 0) & (np.abs(weights) < tiny)).any())
        self.assertGreater(float(weights.min()), tiny)
        # Without the floor the masked exponents underflow to zero or to subnormal values.
        self.assertTrue((unfloored[..., mask] < tiny).all())

    def assert_no_float_bit_linear_weights(self, model: onnx.ModelProto):
        shapes = {tuple(codes.shape) for codes in self.codes.values()} | {tuple(codes.shape[::-1]) for codes in self.codes.values()}
        for init in model.graph.initializer:
            if init.data_type == TensorProto.FLOAT:
                self.assertNotIn(tuple(init.dims), shapes, init.name)


if __name__ == "__main__":
    unittest.main()
