"""Unit tests of the training losses and of data-parallel training against one process."""

import json
import random
import tempfile
import unittest
from pathlib import Path

import torch

from training.model import encode
from training.train import build_model, compute_losses, go_label_mask, make_batch, train

GO_ASPECTS = ["F", "F", "P", "C"]
FAMILIES = ["PF1", "PF2"]


def synthetic_record(rng: random.Random, index: int) -> dict:
    length = rng.randint(12, 70)
    sequence = "M" + "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(length - 1))
    aspects = "".join(a for a in "FPC" if rng.random() < 0.7)
    domains = []
    if index % 3 == 0:
        start = rng.randint(1, length // 2)
        domains = [[FAMILIES[index % 2], start, min(start + 8, length), 30.0]]
    return {"accession": f"P{index:05d}", "sequence": sequence, "split": "train",
            "go": [rng.randint(0, 1) for _ in GO_ASPECTS], "goAspects": aspects,
            "localization": [rng.randint(0, 1) for _ in range(3)] if index % 2 else None,
            "function": [rng.randint(0, 1) for _ in range(2)] if index % 4 else None,
            "domains": domains}


def synthetic_dataset(count: int) -> dict:
    rng = random.Random(5)
    meta = {"goLabels": [f"GO:{i:07d}" for i in range(len(GO_ASPECTS))], "goAspects": GO_ASPECTS,
            "localizationLabels": ["a", "b", "c"], "functionLabels": ["x", "y"], "domainFamilies": FAMILIES}
    return {"meta": meta, "records": [synthetic_record(rng, i) for i in range(count)]}


def config(processes: int, steps: int) -> dict:
    return {
        "seed": 3,
        "model": {"layers": 2, "d_model": 16, "heads": 2, "ffn": 32, "max_length": 128},
        "train": {"batch_size": 6, "crop_length": 40, "long_crop_length": 64, "long_crop_fraction": 0.3,
                  "lr": 0.003, "weight_decay": 0.01, "warmup_steps": 2, "max_steps": steps, "wall_seconds": 600,
                  "int8_from": 0.3, "ternary_from": 0.6, "clip_norm": 1.0, "loss_weights": {},
                  "log_every": 1000, "checkpoint_every": 1000, "threads": 2, "processes": processes},
    }


class GoLabelMaskTest(unittest.TestCase):
    def test_marks_labels_of_annotated_aspects(self):
        mask = go_label_mask(["FP", "", "C"], GO_ASPECTS)
        expected = [[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
        self.assertEqual(mask.tolist(), expected)

    def test_empty_batch(self):
        self.assertEqual(tuple(go_label_mask([], GO_ASPECTS).shape), (0, 4))


class LossSharesTest(unittest.TestCase):
    def test_row_shares_add_up_to_whole_batch_losses(self):
        dataset = synthetic_dataset(8)
        meta, records = dataset["meta"], dataset["records"]
        torch.manual_seed(0)
        model = build_model(config(1, 1)["model"], meta)
        model.set_quantization("int8")
        batch = make_batch(records, [encode(r["sequence"]) for r in records], 4, 3, 2, None, FAMILIES)
        whole = compute_losses(model, batch, GO_ASPECTS)
        first = compute_losses(model, batch, GO_ASPECTS, slice(0, 3))
        second = compute_losses(model, batch, GO_ASPECTS, slice(3, 8))
        self.assertEqual(set(whole), {"lm", "localization", "go", "function", "domain"})
        for name, value in whole.items():
            self.assertGreater(float(value), 0.0, name)
            torch.testing.assert_close(first[name] + second[name], value, atol=1e-5, rtol=1e-5)

    def test_head_without_labels_has_zero_loss(self):
        dataset = synthetic_dataset(4)
        meta, records = dataset["meta"], dataset["records"]
        for r in records:
            r["localization"] = None
        model = build_model(config(1, 1)["model"], meta)
        batch = make_batch(records, [encode(r["sequence"]) for r in records], 4, 3, 2, None, FAMILIES)
        self.assertEqual(float(compute_losses(model, batch, GO_ASPECTS)["localization"]), 0.0)


class DataParallelTest(unittest.TestCase):
    def test_two_processes_train_the_same_weights_as_one(self):
        steps = 8
        with tempfile.TemporaryDirectory() as folder:
            labels = Path(folder) / "labels.json"
            labels.write_text(json.dumps(synthetic_dataset(40)))
            single_run = train(config(1, steps), labels, Path(folder) / "one")
            parallel_run = train(config(2, steps), labels, Path(folder) / "two")
            self.assertEqual(single_run["steps"], steps)
            self.assertEqual(parallel_run["steps"], steps)
            self.assertEqual(single_run["processes"], 1)
            self.assertEqual(parallel_run["processes"], 2)
            single = torch.load(Path(folder) / "one" / "final.pt")["model"]
            parallel = torch.load(Path(folder) / "two" / "final.pt")["model"]
            initial = build_model(config(1, steps)["model"], synthetic_dataset(40)["meta"]).state_dict()
        self.assertEqual(set(single), set(parallel))
        moved = max(float((single[k] - initial[k]).abs().max()) for k in single if k in initial)
        self.assertGreater(moved, 1e-3)
        for name in single:
            torch.testing.assert_close(parallel[name], single[name], atol=1e-4, rtol=1e-4, msg=name)


if __name__ == "__main__":
    unittest.main()
