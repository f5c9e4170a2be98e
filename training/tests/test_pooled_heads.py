"""Unit tests of the pooled-head refit on a frozen network."""

import random
import unittest

import torch

from training.model import VOCAB, ProteinBitNet, encode
from training.pooled_heads import fit_pooled_heads, network_states, pooled_head_proteins, pooled_states

GO_ASPECTS = ["F", "F", "P"]
LOCALIZATION = 10


def record(sequence: str, split: str, cytoplasm: bool) -> dict:
    """A protein whose first GO label and localization class 1 are set exactly for lysine-rich sequences."""
    localization = [0] * LOCALIZATION
    localization[1 if cytoplasm else 0] = 1
    return {"accession": sequence[:12], "sequence": sequence, "split": split,
            "go": [1 if cytoplasm else 0, 0, 1], "goAspects": "FP",
            "localization": localization, "function": None, "domains": []}


def dataset(count: int, split: str, rng: random.Random) -> list[dict]:
    records = []
    for index in range(count):
        lysine_rich = index % 2 == 0
        letters = "KKKKAG" if lysine_rich else "DEDEAG"
        records.append(record("M" + "".join(rng.choice(letters) for _ in range(rng.randint(20, 40))), split, lysine_rich))
    return records


class PooledHeadsTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = ProteinBitNet(layers=1, d_model=16, heads=2, ffn=32, go_labels=3,
                                   localization_labels=LOCALIZATION, function_labels=0, domain_labels=0).eval()
        self.model.set_quantization("ternary")
        self.model.freeze()
        rng = random.Random(1)
        self.train = dataset(200, "train", rng)
        self.validation = dataset(40, "validation", rng)
        self.meta = {"goAspects": GO_ASPECTS, "localizationLabels": [f"class{i}" for i in range(LOCALIZATION)],
                     "functionLabels": []}
        self.config = {"eval": {"eval_length": 64},
                       "train": {"pooled_heads": {"hidden": 16, "depth": 2, "dropout": 0.0, "epochs": 30,
                                                  "batch_size": 32, "lr": 0.01, "max_proteins": 160}}}

    def test_pooled_states_match_graph(self):
        records = self.train[:3]
        states = pooled_states(self.model, records, max_tokens=64, batch_size=2)
        for row, r in enumerate(records):
            ids = torch.tensor([encode(r["sequence"])])
            with torch.no_grad():
                outputs = self.model(ids, torch.ones_like(ids))
            torch.testing.assert_close(states[row], outputs["state_sum"][0] / ids.shape[1], atol=1e-5, rtol=1e-5)

    def test_refit_learns_separable_labels(self):
        body_before = [p.clone() for p in self.model.blocks.parameters()]
        proteins = pooled_head_proteins(self.train, self.config, seed=3)
        summary = fit_pooled_heads(self.model, proteins, self.validation, self.meta, self.config, seed=3)

        self.assertEqual(summary["proteins"], 160)
        self.assertEqual(summary["heads"], ["go", "localization"])
        self.assertIsInstance(self.model.go_head, torch.nn.Sequential)
        self.assertGreaterEqual(summary["bestEpoch"], 1)
        for before, after in zip(body_before, self.model.blocks.parameters()):
            self.assertTrue(torch.equal(before, after), "the refit must leave the network unchanged")

        states = pooled_states(self.model, self.validation, max_tokens=64)
        with torch.no_grad():
            go = torch.sigmoid(self.model.go_head(states))[:, 0]
            localization = torch.sigmoid(self.model.localization_head(states))[:, 1]
        truth = torch.tensor([r["go"][0] == 1 for r in self.validation])
        self.assertEqual(((go > 0.5) == truth).float().mean().item(), 1.0)
        self.assertEqual(((localization > 0.5) == truth).float().mean().item(), 1.0)

    def test_refit_on_layers_and_composition(self):
        config = {"eval": self.config["eval"],
                  "train": {"pooled_heads": dict(self.config["train"]["pooled_heads"], pooling="layers_and_composition")}}
        summary = fit_pooled_heads(self.model, pooled_head_proteins(self.train, config, seed=3), self.validation,
                                   self.meta, config, seed=3)

        width = 2 * 16 + len(VOCAB)
        self.assertEqual((summary["pooling"], summary["pooledWidth"], summary["standardized"]),
                         ("layers_and_composition", width, True))
        standardize = self.model.go_head[0]
        self.assertEqual(standardize.mean.shape, (width,))
        fitted = list(self.train)
        random.Random(3).shuffle(fitted)
        states = pooled_states(self.model, fitted[:160], max_tokens=64)
        torch.testing.assert_close(standardize.mean, states.mean(dim=0))
        # Tokens that never occur (<pad>, <eos>, X, ...) keep scale 1 instead of dividing by zero.
        self.assertEqual(standardize.scale[VOCAB.index("W") - len(VOCAB)].item(), 1.0)
        self.assertGreater(standardize.scale[VOCAB.index("K") - len(VOCAB)].item(), 0.0)
        with torch.no_grad():
            go = torch.sigmoid(self.model.go_head(pooled_states(self.model, self.validation, max_tokens=64)))[:, 0]
        truth = torch.tensor([r["go"][0] == 1 for r in self.validation])
        self.assertEqual(((go > 0.5) == truth).float().mean().item(), 1.0)

    def test_proteins_start_with_first(self):
        first = self.train[150:155]
        proteins = pooled_head_proteins(self.train + self.validation, self.config, seed=3, first=first)
        self.assertEqual(len(proteins), 160)
        self.assertEqual(proteins[:5], first)
        self.assertEqual(len({id(r) for r in proteins}), 160)
        self.assertTrue(all(r["split"] == "train" for r in proteins))
        self.assertEqual(pooled_head_proteins(self.train, self.config, seed=3, first=first), proteins)

    def test_network_states_chosen_final_states(self):
        records = self.train[:5]
        pooled, final = network_states(self.model, records, max_tokens=64, residue_states={1, 3}, batch_size=2)
        torch.testing.assert_close(pooled, pooled_states(self.model, records, max_tokens=64, batch_size=3))
        self.assertEqual([f is None for f in final], [True, False, True, False, True])
        for index in (1, 3):
            ids = torch.tensor([encode(records[index]["sequence"])])
            expected = self.model.final_states(ids)[0, 1:]
            # Batched and single runs differ by float rounding, which can move an int8 activation by one step.
            torch.testing.assert_close(final[index], expected, atol=2e-2, rtol=0)


if __name__ == "__main__":
    unittest.main()
