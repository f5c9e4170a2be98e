"""Unit tests of the tokenizer, quantizers, padding invariance and the int8 ONNX export."""

import tempfile
import unittest
from pathlib import Path

import torch

from training.model import BOS_ID, PAD_ID, VOCAB, X_ID, BitLinear, ProteinBitNet, encode, ternarize


def small_model() -> ProteinBitNet:
    torch.manual_seed(0)
    return ProteinBitNet(layers=2, d_model=32, heads=4, ffn=64, go_labels=5, localization_labels=10, function_labels=3)


class TokenizerTest(unittest.TestCase):
    def test_encode_adds_bos_and_maps_nonstandard_to_x(self):
        tokens = encode("acdU")
        self.assertEqual(tokens[0], BOS_ID)
        self.assertEqual([VOCAB[t] for t in tokens[1:4]], ["A", "C", "D"])
        self.assertEqual(tokens[4], X_ID)

    def test_vocab_layout(self):
        self.assertEqual(VOCAB[:4], ["<pad>", "<bos>", "<eos>", "<unk>"])
        self.assertEqual("".join(VOCAB[4:24]), "ACDEFGHIKLMNPQRSTVWY")
        self.assertEqual(VOCAB[24], "X")


class QuantizerTest(unittest.TestCase):
    def test_ternarize_codes_and_scale(self):
        weight = torch.randn(8, 16)
        codes, scale = ternarize(weight)
        self.assertTrue(set(codes.unique().tolist()) <= {-1.0, 0.0, 1.0})
        self.assertEqual(tuple(scale.shape), (8, 1))
        self.assertTrue(bool((scale > 0).all()))

    def test_straight_through_gradient_reaches_latent_weight(self):
        layer = BitLinear(16, 8)
        layer.mode = "ternary"
        layer(torch.randn(2, 3, 16)).sum().backward()
        self.assertIsNotNone(layer.weight.grad)
        self.assertGreater(float(layer.weight.grad.abs().sum()), 0.0)

    def test_freeze_keeps_ternary_output(self):
        layer = BitLinear(16, 8)
        layer.mode = "ternary"
        x = torch.randn(2, 3, 16)
        before = layer(x)
        layer.freeze()
        self.assertEqual(layer.weight_codes.dtype, torch.int8)
        torch.testing.assert_close(layer(x), before)


class PaddingTest(unittest.TestCase):
    def test_right_padding_does_not_change_outputs(self):
        model = small_model().eval()
        tokens = encode("MKTAYIAKQRQISFVKSHFSRQ")
        alone = torch.tensor([tokens])
        padded = torch.tensor([tokens + [PAD_ID] * 7])
        mask = torch.tensor([[1] * len(tokens) + [0] * 7])
        with torch.no_grad():
            a = model(alone, torch.ones_like(alone))
            b = model(padded, mask)
        for name in ("localization_logits", "go_logits", "function_logits"):
            torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a["lm_logits"], b["lm_logits"][:, : len(tokens)], atol=1e-4, rtol=1e-4)

    def test_prefix_outputs_do_not_depend_on_suffix(self):
        model = small_model().eval()
        tokens = encode("MKTAYIAKQRQISFVKSHFSRQ")
        with torch.no_grad():
            full = model(torch.tensor([tokens]), torch.ones(1, len(tokens), dtype=torch.long))["lm_logits"]
            prefix = model(torch.tensor([tokens[:10]]), torch.ones(1, 10, dtype=torch.long))["lm_logits"]
        torch.testing.assert_close(full[:, :10], prefix, atol=1e-4, rtol=1e-4)


class ExportTest(unittest.TestCase):
    def test_export_stores_int8_ternary_weights(self):
        import onnx

        from training.export import export_onnx

        model = small_model()
        model.set_quantization("ternary")
        model.freeze()
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.onnx"
            result = export_onnx(model, path)
            graph = onnx.load(str(path))
        self.assertEqual(result["int8Initializers"], 8)
        self.assertEqual([i.name for i in graph.graph.input], ["input_ids", "attention_mask"])
        self.assertEqual([o.name for o in graph.graph.output],
                         ["localization_logits", "go_logits", "function_logits", "lm_logits"])


if __name__ == "__main__":
    unittest.main()
