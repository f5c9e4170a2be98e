"""Unit tests of the training losses, of data-parallel training against one process, and of the
recorded and replayed progress schedule."""

import contextlib
import io
import json
import random
import tempfile
import unittest
from pathlib import Path

import torch

from training.model import encode
from training.build import parse_arguments
from training.train import (PROGRESS_FILE, build_model, compute_losses, go_label_mask, make_batch,
                            read_progress_schedule, train)

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


class ProgressScheduleTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.TemporaryDirectory()
        self.addCleanup(self.folder.cleanup)
        self.root = Path(self.folder.name)
        self.labels = self.root / "labels.json"
        self.labels.write_text(json.dumps(synthetic_dataset(30)))

    def run_training(self, name: str, steps: int, schedule=None, processes: int = 1) -> tuple[dict, dict]:
        summary = train(config(processes, steps), self.labels, self.root / name, progress_schedule=schedule)
        return summary, torch.load(self.root / name / "final.pt")["model"]

    def test_run_records_every_step_progress(self):
        summary, _ = self.run_training("recorded", 5)
        document = json.loads((self.root / "recorded" / PROGRESS_FILE).read_text())
        self.assertEqual(document["steps"], summary["steps"])
        self.assertEqual(len(document["progress"]), 5)
        # max_steps ends this run, so step i's progress is i / 5 (the wall-clock share is smaller).
        for index, value in enumerate(document["progress"]):
            self.assertGreaterEqual(value, index / 5)
            self.assertLess(value, (index + 1) / 5)

    def test_replay_matches_recorded_run(self):
        _, original = self.run_training("original", 5)
        schedule = read_progress_schedule(self.root / "original" / PROGRESS_FILE)
        summary, replayed = self.run_training("replayed", 1000, schedule)
        parallel_summary, parallel = self.run_training("parallel", 1000, schedule, processes=2)
        self.assertEqual(summary["steps"], 5)
        self.assertEqual(parallel_summary["steps"], 5)
        self.assertEqual(summary["stoppedBy"], "progress_schedule")
        self.assertEqual(read_progress_schedule(self.root / "replayed" / PROGRESS_FILE), schedule)
        for name in original:
            torch.testing.assert_close(replayed[name], original[name], atol=1e-6, rtol=1e-6, msg=name)
            torch.testing.assert_close(parallel[name], original[name], atol=1e-4, rtol=1e-4, msg=name)

    def test_other_schedule_trains_other_weights(self):
        _, original = self.run_training("original", 5)
        _, late = self.run_training("late", 1000, [0.95] * 5)
        self.assertGreater(max(float((late[k] - original[k]).abs().max()) for k in original), 1e-4)

    def test_rejects_malformed_schedules(self):
        cases = {
            "missing or empty progress list": {"steps": 0, "progress": []},
            "3 progress entries for 4 steps": {"steps": 4, "progress": [0.0, 0.1, 0.2]},
            "progress decreases at step 2": {"steps": 3, "progress": [0.0, 0.5, 0.4]},
            "progress of step 1 is 1.0": {"steps": 2, "progress": [0.0, 1.0]},
            "progress of step 0 is 'a'": {"steps": 1, "progress": ["a"]},
        }
        for message, document in cases.items():
            path = self.root / "bad.json"
            path.write_text(json.dumps(document))
            with self.subTest(message), self.assertRaisesRegex(ValueError, message):
                read_progress_schedule(path)

    def test_build_rejects_conflicting_step_options(self):
        for extra in (["--max-steps", "10"], ["--network-from", "models/bitnet-protein-tiny"]):
            with self.subTest(extra), self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                parse_arguments(["--progress-from", "progress.json", *extra])


if __name__ == "__main__":
    unittest.main()
