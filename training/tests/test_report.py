import tempfile
import unittest
from pathlib import Path
from unittest import mock

from training import report
from training.report import gap_text, missing_twin_heads, training_text, twin_differences, twin_folder

CONFIG = {
    "model": {"layers": 2, "d_model": 64, "heads": 4, "ffn": 256},
    "train": {"batch_size": 8, "crop_length": 64, "long_crop_fraction": 0.1, "long_crop_length": 128},
}


def twin_summary(**extra):
    return dict({"steps": 120, "sequencesSeen": 960, "wallSeconds": 30, "parameters": 1000, "finalMode": "float"}, **extra)


class TrainingTextTest(unittest.TestCase):
    def twin_line(self, summary) -> str:
        lines = training_text({}, summary, CONFIG).splitlines()
        return next(line for line in lines if line.startswith("- Full-precision twin"))

    def test_twin_with_step_limit(self):
        line = self.twin_line(twin_summary(maxSteps=120, wallBudgetSeconds=None, stoppedBy="max_steps"))
        self.assertIn("120 steps", line)
        self.assertIn("`python3 -m training.build --config <config> --twin --max-steps 120`", line)

    def test_twin_on_replayed_schedule(self):
        line = self.twin_line(twin_summary(maxSteps=120, wallBudgetSeconds=None, stoppedBy="progress_schedule"))
        self.assertIn("--twin --progress-from <the model's checkpoints/progress.json>`", line)
        self.assertNotIn("--max-steps", line)

    def test_twin_with_wall_budget(self):
        line = self.twin_line(twin_summary(maxSteps=6000, wallBudgetSeconds=30.0, stoppedBy="wall_seconds"))
        self.assertIn("`python3 -m training.build --config <config> --twin`", line)
        self.assertNotIn("--max-steps", line)

    def test_data_parallel_twin(self):
        line = self.twin_line(twin_summary(maxSteps=120, wallBudgetSeconds=None, processes=2, threadsPerProcess=1))
        self.assertIn("30 s in 2 data-parallel processes of 1 thread(s),", line)
        self.assertNotIn("data-parallel", self.twin_line(twin_summary()))

    def test_twin_summary_without_budget_fields(self):
        line = self.twin_line(twin_summary())
        self.assertIn("--twin`", line)
        self.assertNotIn("--max-steps", line)


def method_figures(value: float) -> dict:
    figures = {"all": {"fmax": value, "microF1": value, "perplexity": 10 + value}}
    return {"go": {aspect: figures for aspect in "FPC"}, "localization": figures, "function": figures,
            "lm": figures}


class TwinDifferencesTest(unittest.TestCase):
    MODEL = {"steps": 120, "pooledHeadsRefit": {"proteins": 900}}

    def test_replayed_twin_matches(self):
        summary = twin_summary(stoppedBy="progress_schedule")
        self.assertEqual(twin_differences(self.MODEL, summary, {"proteins": 900}), [])

    def test_other_step_count(self):
        differences = twin_differences(self.MODEL, twin_summary(steps=80, stoppedBy="max_steps"), {"proteins": 900})
        self.assertEqual(differences, ["80 training steps against the model's 120"])

    def test_same_steps_own_schedule(self):
        differences = twin_differences(self.MODEL, twin_summary(stoppedBy="max_steps"), {"proteins": 900})
        self.assertEqual(len(differences), 1)
        self.assertIn("own learning-rate schedule", differences[0])

    def test_other_pooled_proteins(self):
        differences = twin_differences(self.MODEL, twin_summary(stoppedBy="progress_schedule"), {"proteins": 400})
        self.assertEqual(differences, ["pooled heads fitted on 400 training proteins against the model's 900"])

    def test_model_without_training_record(self):
        self.assertEqual(twin_differences({}, twin_summary(steps=80), {"proteins": 400}), [])

    def test_gap_text_names_differences(self):
        methods = {"ternary": method_figures(0.5), "full precision": method_figures(0.6)}
        self.assertNotIn("not trained like the model", gap_text(methods, []))
        text = gap_text(methods, ["80 training steps against the model's 120"])
        self.assertIn("GO F Fmax 0.500 vs 0.600", text)
        self.assertIn("The twin was not trained like the model (80 training steps against the model's 120)", text)


class TwinFolderTest(unittest.TestCase):
    def test_work_folder_first_then_the_repository_copy(self):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            run_dir, kept = root / "work" / "tiny", root / "training" / "twins" / "tiny"
            kept.mkdir(parents=True)
            with mock.patch.object(report, "TRAINING_DIR", root / "training"):
                self.assertIsNone(twin_folder(None, run_dir, "tiny"))
                (kept / "final.pt").write_bytes(b"")
                self.assertEqual(twin_folder(None, run_dir, "tiny"), kept)
                (run_dir / "twin").mkdir(parents=True)
                (run_dir / "twin" / "final.pt").write_bytes(b"")
                self.assertEqual(twin_folder(None, run_dir, "tiny"), run_dir / "twin")
                self.assertEqual(twin_folder(kept, run_dir, "tiny"), kept)
                with self.assertRaises(FileNotFoundError):
                    twin_folder(root / "missing", run_dir, "tiny")


    def test_missing_refitted_heads_are_named(self):
        config = {"train": {"domain_head": {}, "pooled_heads": {}}}
        with tempfile.TemporaryDirectory() as folder:
            twin = Path(folder)
            (twin / "final.pt").write_bytes(b"")
            self.assertEqual(missing_twin_heads(twin, config), ["domain_head.pt", "pooled_heads.pt"])
            (twin / "pooled_heads.pt").write_bytes(b"")
            self.assertEqual(missing_twin_heads(twin, config), ["domain_head.pt"])
            self.assertEqual(missing_twin_heads(twin, {"train": {"pooled_heads": {}}}), [])


if __name__ == "__main__":
    unittest.main()
