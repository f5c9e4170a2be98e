"""Unit tests of domain labels and span decoding, the CAFA metrics and the homology-transfer baselines."""

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from training import baselines
from training.domains import residue_labels, split_profiles
from training.domain_head import class_weights, lookahead_rows
from training.evaluate import (
    DOMAIN_MAX_GAP, DOMAIN_MIN_LENGTH, aupr, decode_spans, domain_metrics, exact_set_accuracy, fmax, matthews,
    shift_domain_rows, smin, tune_domain_decoding,
)


def probabilities_with(length: int, family_runs: dict[int, list[tuple[int, int]]], families: int = 2) -> np.ndarray:
    """Per-residue class probabilities: 0.9 for the family inside the given 0-based runs, else no domain."""
    result = np.zeros((length, families + 1))
    result[:, 0] = 1.0
    for family, runs in family_runs.items():
        for start, end in runs:
            result[start:end + 1, 0] = 0.1
            result[start:end + 1, family + 1] = 0.9
    return result


class DomainLabelTest(unittest.TestCase):
    def test_split_profiles_reads_names_up_to_each_terminator(self):
        text = "HMMER3/f\nNAME  A\nLENG 3\n//\nHMMER3/f\nNAME  B\n//\n"
        profiles = split_profiles(text)
        self.assertEqual(sorted(profiles), ["A", "B"])
        self.assertTrue(profiles["B"].startswith("HMMER3/f\nNAME  B"))

    def test_residue_labels_take_the_higher_scoring_family_where_spans_overlap(self):
        labels = residue_labels(12, [["x", 2, 6, 30.0], ["y", 5, 9, 40.0], ["z", 1, 3, 99.0]], {"x": 0, "y": 1})
        self.assertEqual(labels, [0, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0])

    def test_residue_labels_clip_spans_to_the_sequence(self):
        self.assertEqual(residue_labels(4, [["x", 3, 10, 5.0]], {"x": 0}), [0, 0, 1, 1])


class SpanDecodingTest(unittest.TestCase):
    def test_runs_separated_by_the_maximum_gap_merge(self):
        first_end = 20
        second_start = first_end + DOMAIN_MAX_GAP + 1
        probabilities = probabilities_with(60, {0: [(5, first_end), (second_start, 40)]})
        self.assertEqual([(s[0], s[1], s[2]) for s in decode_spans(probabilities, [0.5, 0.5])], [(0, 6, 41)])

    def test_runs_one_residue_further_apart_stay_separate(self):
        second_start = 20 + DOMAIN_MAX_GAP + 2
        probabilities = probabilities_with(60, {0: [(5, 20), (second_start, 40)]})
        spans = decode_spans(probabilities, [0.5, 0.5])
        self.assertEqual([(s[1], s[2]) for s in spans], [(6, 21), (second_start + 1, 41)])

    def test_short_runs_are_dropped_and_the_minimum_is_kept(self):
        probabilities = probabilities_with(80, {0: [(0, DOMAIN_MIN_LENGTH - 1)], 1: [(50, 50 + DOMAIN_MIN_LENGTH - 2)]})
        spans = decode_spans(probabilities, [0.5, 0.5])
        self.assertEqual([(s[0], s[1], s[2]) for s in spans], [(0, 1, DOMAIN_MIN_LENGTH)])
        self.assertAlmostEqual(spans[0][3], 0.9)

    def test_span_at_the_sequence_end(self):
        spans = decode_spans(probabilities_with(30, {1: [(15, 29)]}), [0.5, 0.5])
        self.assertEqual([(s[0], s[1], s[2]) for s in spans], [(1, 16, 30)])

    def test_domain_metrics_count_a_half_covered_span_as_found(self):
        record = {"sequence": "A" * 60, "domains": [["fam", 11, 30, 50.0]]}
        probabilities = probabilities_with(60, {0: [(10, 19)]}, families=1)
        result = domain_metrics([record], [probabilities], ["fam"], [0.5])
        self.assertEqual(result["span"]["recall"], 1.0)
        self.assertEqual(result["span"]["precision"], 1.0)
        self.assertEqual(result["residue"]["recall"], 0.5)


    def test_decode_spans_takes_the_minimum_length_and_gap(self):
        probabilities = probabilities_with(80, {0: [(0, 11), (18, 40)]})
        spans = decode_spans(probabilities, [0.5, 0.5], min_length=20, max_gap=8)
        self.assertEqual([(s[1], s[2]) for s in spans], [(1, 41)])
        spans = decode_spans(probabilities, [0.5, 0.5], min_length=20, max_gap=5)
        self.assertEqual([(s[1], s[2]) for s in spans], [(19, 41)])

    def test_tune_domain_decoding_drops_short_false_runs(self):
        record = {"sequence": "A" * 100, "domains": [["fam", 41, 90, 50.0]]}
        probabilities = probabilities_with(100, {0: [(5, 16), (40, 89)]}, families=1)
        decoding = tune_domain_decoding([record], [probabilities], ["fam"])
        self.assertEqual(decoding["minLength"], 20)
        self.assertEqual(decoding["maxGap"], 4)
        self.assertAlmostEqual(decoding["thresholds"][0], 0.02)


class LookaheadTest(unittest.TestCase):
    def test_residue_takes_the_row_lookahead_further_on(self):
        rows = np.arange(6, dtype=float)[:, None]
        self.assertEqual(shift_domain_rows(rows, 2)[:, 0].tolist(), [2, 3, 4, 5, 5, 5])

    def test_zero_lookahead_keeps_the_rows(self):
        rows = np.arange(4, dtype=float)[:, None]
        self.assertIs(shift_domain_rows(rows, 0), rows)

    def test_lookahead_beyond_the_sequence_takes_the_last_row(self):
        rows = np.arange(3, dtype=float)[:, None]
        self.assertEqual(shift_domain_rows(rows, 10)[:, 0].tolist(), [2, 2, 2])

    def test_refit_rows_match_decoder_shift(self):
        # Two records of 4 and 3 residues concatenated: rows 0-3 and 4-6.
        self.assertEqual(lookahead_rows([4, 3], 2).tolist(), [2, 3, 3, 3, 6, 6, 6])
        self.assertEqual(lookahead_rows([4, 3], 2).tolist(),
                         (shift_domain_rows(np.arange(4), 2).tolist() + (4 + shift_domain_rows(np.arange(3), 2)).tolist()))

    def test_class_weight_power(self):
        labels = torch.tensor([0] * 8 + [1] * 2)
        np.testing.assert_allclose(class_weights(labels, 3, 1.0).tolist(), [10 / 16, 10 / 4, 0.0])
        np.testing.assert_allclose(class_weights(labels, 3, 0.5).tolist(), [(10 / 16) ** 0.5, (10 / 4) ** 0.5, 0.0])
        np.testing.assert_allclose(class_weights(labels, 3, 0.0).tolist(), [1.0, 1.0, 0.0])


class MetricTest(unittest.TestCase):
    def test_fmax_of_a_perfect_ranking_is_one(self):
        truth = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
        self.assertAlmostEqual(fmax(truth, truth * 0.9 + 0.05)["fmax"], 1.0)

    def test_smin_is_zero_for_perfect_scores_and_grows_with_errors(self):
        truth = np.array([[1, 0], [0, 1]], dtype=bool)
        ic = np.array([1.0, 2.0])
        self.assertEqual(smin(truth, truth.astype(float), ic)["smin"], 0.0)
        wrong = smin(truth, (~truth).astype(float), ic)["smin"]
        self.assertAlmostEqual(wrong, np.sqrt(1.5 ** 2 + 1.5 ** 2))

    def test_aupr_matches_a_hand_computed_average_precision(self):
        truth = np.array([[1, 0, 1, 0]], dtype=bool)
        scores = np.array([[0.9, 0.8, 0.7, 0.1]])
        self.assertAlmostEqual(aupr(truth, scores), (1 / 1 + 2 / 3) / 2)

    def test_matthews_and_exact_set_accuracy(self):
        truth = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
        self.assertEqual(matthews(truth[:, 0], truth[:, 0]), 1.0)
        self.assertIsNone(matthews(truth[:, 0], np.zeros(3, dtype=bool)))
        self.assertAlmostEqual(exact_set_accuracy(truth, np.array([[1, 0], [0, 0], [1, 1]], dtype=bool)), 2 / 3)


class BaselineTest(unittest.TestCase):
    meta = {"goAspects": ["F", "F", "C"], "localizationLabels": ["a", "b"], "functionLabels": ["x"],
            "goLabels": ["GO:1", "GO:2", "GO:3"]}
    train = [
        {"accession": "t1", "go": [1, 0, 1], "goAspects": "FC", "localization": [1, 0], "function": [1]},
        {"accession": "t2", "go": [0, 1, 0], "goAspects": "F", "localization": None, "function": [0]},
    ]

    def test_identity_bins(self):
        self.assertEqual(baselines.identity_bin([]), "<30%")
        self.assertEqual(baselines.identity_bin([("t1", 49.9, 80.0), ("t2", 31.0, 90.0)]), "30-50%")
        self.assertEqual(baselines.identity_bin([("t1", 100.0, 80.0)]), ">=70%")

    def test_best_hit_uses_the_best_hit_annotated_in_each_aspect(self):
        hits = {"q": [("t2", 60.0, 200.0), ("t1", 40.0, 100.0)]}
        result = baselines.diamond_predictions([{"accession": "q"}], hits, self.train, self.meta, weighted=False)
        np.testing.assert_allclose(result["go"][0], [0.0, 0.6, 0.4])
        np.testing.assert_allclose(result["localization"][0], [0.4, 0.0])

    def test_weighted_transfer_uses_bitscore_shares(self):
        hits = {"q": [("t2", 60.0, 300.0), ("t1", 40.0, 100.0)]}
        result = baselines.diamond_predictions([{"accession": "q"}], hits, self.train, self.meta, weighted=True)
        np.testing.assert_allclose(result["go"][0], [0.25, 0.75, 1.0])

    def test_frequency_baseline_counts_only_proteins_annotated_in_the_aspect(self):
        result = baselines.frequency_predictions([{"accession": "q"}], self.train, self.meta)
        np.testing.assert_allclose(result["go"][0], [0.5, 0.5, 1.0])

    @unittest.skipIf(shutil.which("diamond") is None, "needs Debian's diamond-aligner")
    def test_diamond_search_is_reused_for_the_same_proteins(self):
        sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRAHVEIL"
        train = [{"accession": "t1", "sequence": sequence}, {"accession": "t2", "sequence": sequence[::-1]}]
        queries = [{"accession": "q1", "sequence": sequence[:150] + "W" + sequence[151:]}]
        with tempfile.TemporaryDirectory() as directory, \
                mock.patch("training.baselines.subprocess.run", wraps=subprocess.run) as run:
            first = baselines.run_diamond(train, queries, Path(directory), threads=1)
            searches = run.call_count
            second = baselines.run_diamond(train, queries, Path(directory), threads=2)
            self.assertEqual(run.call_count, searches, "the same proteins and settings must reuse the hits")
            self.assertEqual(first, second)
            self.assertEqual(first["q1"][0][0], "t1")
            baselines.run_diamond(train, queries + [{"accession": "q2", "sequence": sequence[10:200]}], Path(directory), 1)
            self.assertEqual(run.call_count, 2 * searches, "other queries must search again")


if __name__ == "__main__":
    unittest.main()
