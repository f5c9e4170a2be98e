"""Unit tests of the forward passes shared among processes."""

import random
import unittest

import numpy as np
import torch

from training.evaluate import predict
from training.model import ProteinBitNet
from training.pooled_heads import network_states
from training.shards import merge_shares, processes_of, share_order


def proteins(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"sequence": "M" + "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(5, 70)))}
            for _ in range(count)]


class ShareOrderTest(unittest.TestCase):
    def test_every_index_once_and_lengths_spread(self):
        lengths = [random.Random(index).randint(1, 500) for index in range(101)]
        shares = share_order(lengths, 3)
        self.assertEqual(sorted(index for share in shares for index in share), list(range(101)))
        self.assertEqual([len(share) for share in shares], [34, 34, 33])
        totals = [sum(lengths[index] for index in share) for share in shares]
        self.assertLess(max(totals) - min(totals), max(lengths))

    def test_merge_restores_input_order(self):
        parts = [([2, 0], {"go": np.array([[2.0], [0.0]]), "residues": [20, 0], "lmTokens": 5}),
                 ([1], {"go": np.array([[1.0]]), "residues": [10], "lmTokens": 7})]
        merged = merge_shares(parts, 3)
        np.testing.assert_array_equal(merged["go"], [[0.0], [1.0], [2.0]])
        self.assertEqual(merged["residues"], [0, 10, 20])
        self.assertEqual(merged["lmTokens"], 12)

    def test_processes_share_the_threads(self):
        self.assertEqual(processes_of({"train": {"threads": 2, "processes": 2}}), (2, 1))
        self.assertEqual(processes_of({"train": {"threads": 4}}), (1, 4))
        self.assertEqual(processes_of({"train": {"threads": 2, "processes": 2}}, threads=6), (2, 3))


class ProcessPassTest(unittest.TestCase):
    """Two processes give each protein the outputs that one process gives it."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = ProteinBitNet(layers=1, d_model=16, heads=2, ffn=32, go_labels=3, localization_labels=10,
                                  function_labels=4, domain_labels=3).eval()
        cls.model.set_quantization("ternary")
        cls.model.freeze()
        cls.records = proteins(23, seed=5)

    def test_network_states(self):
        keep = {0, 4, 17}
        pooled, final = network_states(self.model, self.records, 64, keep)
        shared_pooled, shared_final = network_states(self.model, self.records, 64, keep, processes=2, threads=1)
        torch.testing.assert_close(shared_pooled, pooled, rtol=0, atol=1e-5)
        for index in range(len(self.records)):
            if index in keep:
                torch.testing.assert_close(shared_final[index], final[index], rtol=0, atol=1e-5)
            else:
                self.assertIsNone(shared_final[index])

    def test_predict(self):
        alone = predict(self.model, self.records, 64, batch_size=4, reference_positions=8)
        shared = predict(self.model, self.records, 64, batch_size=4, reference_positions=8, processes=2, threads=1)
        self.assertEqual(sorted(shared), sorted(alone))
        for head in ("localization", "go", "function"):
            np.testing.assert_allclose(shared[head], alone[head], rtol=0, atol=1e-5)
        self.assertEqual(shared["lmTokens"], alone["lmTokens"])
        self.assertAlmostEqual(shared["lmNll"], alone["lmNll"], places=2)
        self.assertEqual(shared["tokens"], alone["tokens"])
        np.testing.assert_allclose(shared["residueNll"], alone["residueNll"], rtol=1e-5)
        for mine, theirs in zip(shared["domain"], alone["domain"]):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5)
        for mine, theirs in zip(shared["outputs"], alone["outputs"]):
            for name in theirs:
                np.testing.assert_allclose(mine[name], theirs[name], rtol=0, atol=1e-4)


if __name__ == "__main__":
    unittest.main()
