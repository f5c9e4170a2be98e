"""Unit tests of restoring a frozen network and its refitted heads from an exported model folder."""

import json
import tempfile
import unittest
from pathlib import Path

import torch

from training.build import load_domain_head, load_pooled_heads
from training.export import export_onnx
from training.model import encode
from training.restore import load_network, restore_checkpoints
from training.train import build_model

MODEL = {"layers": 2, "d_model": 16, "heads": 2, "ffn": 32, "max_length": 64}
META = {"goLabels": ["GO:1", "GO:2", "GO:3"], "localizationLabels": [f"class{i}" for i in range(4)],
        "functionLabels": ["a", "b"], "domainFamilies": ["Pkinase"]}
DOMAIN = {"hidden": 8, "lookahead": 2, "steps": 1}
POOLED = {"hidden": 12, "depth": 2, "heads": ["function", "go", "localization"], "proteins": 10}


def shipped_model(pooling: str):
    """A frozen model with refitted heads, as the export step receives it."""
    torch.manual_seed(4)
    model = build_model(MODEL, META)
    model.set_quantization("ternary")
    model.freeze()
    model.replace_domain_head(DOMAIN["hidden"], DOMAIN["lookahead"])
    model.replace_pooled_heads(POOLED["hidden"], POOLED["depth"], pooling=pooling)
    with torch.no_grad():
        # Training leaves every norm with its own values; the exporter stores identical tensors once.
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
        if pooling != "final":
            # The refit gives every pooled head the same standardization, so the graph stores it once.
            mean, scale = torch.randn(model.pooled_width()), torch.rand(model.pooled_width()) + 0.5
            for head in (model.localization_head, model.go_head, model.function_head):
                head[0].mean.copy_(mean)
                head[0].scale.copy_(scale)
    return model.eval()


class RestoreTest(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.root = Path(self.directory.name)
        self.model_dir = self.root / "model"
        self.model_dir.mkdir()
        self.ship("final")

    def ship(self, pooling: str) -> None:
        self.shipped = shipped_model(pooling)
        export_onnx(self.shipped, self.model_dir / "model.onnx")
        self.manifest = {"modelId": "sha256:test", "exportedOnnxFile": "model.onnx",
                         "training": {"steps": 7, "wallSeconds": 3, "sequencesSeen": 56, "machine": "test machine",
                                      "command": "python3 -m training.build --config c.json",
                                      "domainHeadRefit": DOMAIN, "pooledHeadsRefit": dict(POOLED, pooling=pooling)}}
        (self.model_dir / "manifest.json").write_text(json.dumps(self.manifest))

    def tearDown(self):
        self.directory.cleanup()

    def restored(self, checkpoints: Path):
        model = build_model(MODEL, META)
        load_network(model, checkpoints / "final.pt", ternary=True)
        load_domain_head(model, checkpoints)
        load_pooled_heads(model, checkpoints)
        return model.eval()

    def check_restored_outputs(self, checkpoints: Path) -> None:
        model = self.restored(checkpoints)
        self.assertEqual(model.domain_lookahead, 2)
        self.assertEqual(model.pooling, self.shipped.pooling)
        ids = torch.tensor([encode("MKTAYIAKQRQISFVKSHFSRQ")])
        with torch.no_grad():
            expected, actual = self.shipped(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids))
        for name in ("localization_logits", "go_logits", "function_logits", "domain_logits", "lm_logits"):
            torch.testing.assert_close(actual[name], expected[name], atol=0, rtol=0)

    def test_restored_model_gives_the_shipped_outputs(self):
        checkpoints = self.root / "checkpoints"
        summary = restore_checkpoints({"model": MODEL}, META, self.model_dir, checkpoints)
        self.assertEqual((summary["steps"], summary["restoredFrom"]), (7, "sha256:test"))
        self.assertEqual(summary["trainingCommand"], "python3 -m training.build --config c.json")
        self.check_restored_outputs(checkpoints)

    def test_restores_the_standardization_that_the_graph_stores_once(self):
        self.ship("layers_and_composition")
        checkpoints = self.root / "checkpoints"
        restore_checkpoints({"model": MODEL}, META, self.model_dir, checkpoints)
        self.check_restored_outputs(checkpoints)

    def test_final_checkpoint_leaves_out_the_refitted_heads(self):
        checkpoints = self.root / "checkpoints"
        restore_checkpoints({"model": MODEL}, META, self.model_dir, checkpoints)
        saved = torch.load(checkpoints / "final.pt")
        self.assertTrue(saved["frozen"])
        self.assertFalse([name for name in saved["model"] if name.startswith(("go_head", "domain_head"))])
        self.assertIn("blocks.0.qkv.weight_codes", saved["model"])

    def test_frozen_checkpoint_is_not_a_full_precision_network(self):
        checkpoints = self.root / "checkpoints"
        restore_checkpoints({"model": MODEL}, META, self.model_dir, checkpoints)
        with self.assertRaisesRegex(ValueError, "frozen ternary"):
            load_network(build_model(MODEL, META), checkpoints / "final.pt", ternary=False)

    def test_restored_checkpoint_records_the_label_order(self):
        checkpoints = self.root / "checkpoints"
        restore_checkpoints({"model": MODEL}, META, self.model_dir, checkpoints)
        self.assertEqual(torch.load(checkpoints / "final.pt")["labels"]["go"], ["GO:1", "GO:2", "GO:3"])
        reordered = dict(META, goLabels=["GO:1", "GO:3", "GO:2"])
        with self.assertRaisesRegex(ValueError, "other go labels: output 1 is GO:2, the labels file has GO:3"):
            load_network(build_model(MODEL, reordered), checkpoints / "final.pt", ternary=True, meta=reordered)
        load_network(build_model(MODEL, META), checkpoints / "final.pt", ternary=True, meta=META)

    def test_model_with_other_labels_is_not_restored(self):
        self.manifest["heads"] = {"go": {"labels": ["GO:1", "GO:2", "GO:3"]},
                                  "localization": {"labels": [f"class{i}" for i in range(5)]}}
        (self.model_dir / "manifest.json").write_text(json.dumps(self.manifest))
        with self.assertRaisesRegex(ValueError, "other localization labels: output 4 is class4, the labels file has nothing"):
            restore_checkpoints({"model": MODEL}, META, self.model_dir, self.root / "checkpoints")
        self.assertFalse((self.root / "checkpoints").exists())

    def test_other_network_shape_is_refused(self):
        with self.assertRaises(RuntimeError):
            restore_checkpoints({"model": dict(MODEL, ffn=48)}, META, self.model_dir, self.root / "checkpoints")


if __name__ == "__main__":
    unittest.main()
