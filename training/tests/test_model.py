"""Unit tests of the tokenizer, quantizers, padding invariance, prefix caching and the int8 ONNX export."""

import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from training.evaluate import predict
from training.export import reference_entry, reference_outputs
from training.model import BOS_ID, PAD_ID, VOCAB, X_ID, BitLinear, ProteinBitNet, Standardize, encode, ternarize


def small_model() -> ProteinBitNet:
    torch.manual_seed(0)
    return ProteinBitNet(layers=2, d_model=32, heads=4, ffn=64, go_labels=5, localization_labels=10, function_labels=3,
                         domain_labels=2)


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
        torch.testing.assert_close(a["domain_logits"], b["domain_logits"][:, : len(tokens)], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a["lm_logits"], b["lm_logits"][:, : len(tokens)], atol=1e-4, rtol=1e-4)

    def test_prefix_outputs_do_not_depend_on_suffix(self):
        model = small_model().eval()
        tokens = encode("MKTAYIAKQRQISFVKSHFSRQ")
        with torch.no_grad():
            full = model(torch.tensor([tokens]), torch.ones(1, len(tokens), dtype=torch.long))["lm_logits"]
            prefix = model(torch.tensor([tokens[:10]]), torch.ones(1, 10, dtype=torch.long))["lm_logits"]
        torch.testing.assert_close(full[:, :10], prefix, atol=1e-4, rtol=1e-4)


class PrefixCacheTest(unittest.TestCase):
    def check_split(self, model, cut: int):
        tokens = encode("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ")
        ids = torch.tensor([tokens])
        with torch.no_grad():
            whole = model(ids, torch.ones_like(ids))
            first = model(ids[:, :cut], torch.ones(1, cut, dtype=torch.long))
            rest = model(ids[:, cut:], torch.ones(1, len(tokens) - cut, dtype=torch.long),
                         first["present"], first["state_sum"])
        for name in ("localization_logits", "go_logits", "function_logits"):
            torch.testing.assert_close(rest[name], whole[name], atol=1e-5, rtol=1e-5)
        for name in ("lm_logits", "domain_logits"):
            torch.testing.assert_close(torch.cat([first[name], rest[name]], dim=1), whole[name], atol=1e-5, rtol=1e-5)
        self.assertEqual(rest["present"][0][0].shape[2], len(tokens))

    def test_cached_prefix_gives_the_one_pass_outputs_in_float(self):
        self.check_split(small_model().eval(), 9)

    def test_cached_prefix_gives_the_one_pass_outputs_when_frozen(self):
        model = small_model().eval()
        model.set_quantization("ternary")
        model.freeze()
        self.check_split(model, 1)
        self.check_split(model, 20)

    def test_prefix_cache_with_hidden_layer_domain_head(self):
        model = small_model().eval()
        model.set_quantization("ternary")
        model.freeze()
        model.replace_domain_head(hidden=16, lookahead=3)
        model.eval()
        self.assertEqual(model.domain_lookahead, 3)
        self.check_split(model, 12)

    def test_prefix_cache_with_mlp_pooled_heads(self):
        model = small_model().eval()
        model.set_quantization("ternary")
        model.freeze()
        model.replace_pooled_heads(hidden=16, depth=2, dropout=0.3)
        model.eval()
        self.assertIsInstance(model.go_head, torch.nn.Sequential)
        self.assertEqual(model.go_head[-1].out_features, 5)
        self.assertEqual(model.function_head[-1].out_features, 3)
        self.check_split(model, 12)

    def test_prefix_cache_with_layer_and_composition_pooling(self):
        model = small_model().eval()
        model.set_quantization("ternary")
        model.freeze()
        model.replace_pooled_heads(hidden=16, depth=2, pooling="layers_and_composition")
        model.eval()
        # Two layers and the final states of width 32, and one column per token of the vocabulary.
        self.assertEqual(model.pooled_width(), 3 * 32 + len(VOCAB))
        self.assertIsInstance(model.go_head[0], Standardize)
        self.check_split(model, 1)
        self.check_split(model, 12)

    def test_composition_part_of_the_state_sum_counts_tokens(self):
        model = small_model().eval()
        model.replace_pooled_heads(hidden=8, depth=1, pooling="layers_and_composition")
        tokens = encode("MKKAY")
        with torch.no_grad():
            state_sum = model(torch.tensor([tokens]), torch.ones(1, len(tokens), dtype=torch.long))["state_sum"][0]
        counts = state_sum[-len(VOCAB):]
        self.assertEqual(counts[VOCAB.index("K")].item(), 2.0)
        self.assertEqual(counts[BOS_ID].item(), 1.0)
        self.assertEqual(counts.sum().item(), len(tokens))

    def test_unknown_pooling_is_refused(self):
        with self.assertRaisesRegex(ValueError, "unknown pooling"):
            small_model().replace_pooled_heads(hidden=8, depth=1, pooling="max")

    def test_empty_past_changes_nothing(self):
        model = small_model().eval()
        ids = torch.tensor([encode("MKTAYIAKQRQ")])
        past, state_sum = model.empty_past(1)
        with torch.no_grad():
            plain = model(ids, torch.ones_like(ids))
            with_empty = model(ids, torch.ones_like(ids), past, state_sum)
        torch.testing.assert_close(plain["go_logits"], with_empty["go_logits"])


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
        self.assertEqual([i.name for i in graph.graph.input],
                         ["input_ids", "attention_mask", "past_key_0", "past_value_0", "past_key_1", "past_value_1",
                          "past_state_sum"])
        self.assertEqual([o.name for o in graph.graph.output],
                         ["localization_logits", "go_logits", "function_logits", "domain_logits", "lm_logits",
                          "present_key_0", "present_value_0", "present_key_1", "present_value_1", "state_sum"])
        past = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
        self.assertEqual(past["past_key_0"], ["batch", 4, "past", 8])
        self.assertEqual(past["past_state_sum"], ["batch", 32])

    def test_export_with_layer_and_composition_pooling(self):
        import onnx

        from training.export import export_onnx

        model = small_model()
        model.set_quantization("ternary")
        model.freeze()
        model.replace_pooled_heads(hidden=8, depth=1, pooling="layers_and_composition")
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.onnx"
            export_onnx(model, path)
            graph = onnx.load(str(path))
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
        self.assertEqual(dims["past_state_sum"], ["batch", 3 * 32 + len(VOCAB)])


class ReferenceOutputsTest(unittest.TestCase):
    def test_batched_reference_outputs_match_single(self):
        # Float weights and activations: an int8 rounding step could flip between batched and single runs.
        model = small_model().eval()
        model.replace_pooled_heads(8, 1, pooling="layers_and_composition")
        records = [{"accession": f"P{i}", "sequence": sequence, "go": [0] * 5, "goAspects": "F"}
                   for i, sequence in enumerate(["MKV", "MKVLAAGLLALLC", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MA" * 20])]
        alone = reference_outputs(model, records, max_tokens=32, positions=16)
        batched = predict(model, records, max_tokens=32, batch_size=3, reference_positions=16)
        entries = [reference_entry(r, t, o, 16) for r, t, o in zip(records, batched["tokens"], batched["outputs"])]
        self.assertEqual(len(entries), len(alone["sequences"]))
        for expected, entry in zip(alone["sequences"], entries):
            self.assertEqual(entry["inputIds"], expected["inputIds"])
            self.assertEqual(set(entry["outputs"]), set(expected["outputs"]))
            for name, values in expected["outputs"].items():
                kept = np.array(entry["outputs"][name])
                self.assertEqual(kept.shape, np.array(values).shape, name)
                self.assertLess(float(np.abs(kept - np.array(values)).max()), 1e-4, name)
        self.assertEqual(len(entries[3]["outputs"]["lm_logits"]), 16)
        self.assertEqual(len(entries[0]["outputs"]["lm_logits"]), 4)


if __name__ == "__main__":
    unittest.main()
