import unittest

from training.report import training_text

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

    def test_twin_with_wall_budget(self):
        line = self.twin_line(twin_summary(maxSteps=6000, wallBudgetSeconds=30.0, stoppedBy="wall_seconds"))
        self.assertIn("`python3 -m training.build --config <config> --twin`", line)
        self.assertNotIn("--max-steps", line)

    def test_twin_summary_without_budget_fields(self):
        line = self.twin_line(twin_summary())
        self.assertIn("--twin`", line)
        self.assertNotIn("--max-steps", line)


if __name__ == "__main__":
    unittest.main()
