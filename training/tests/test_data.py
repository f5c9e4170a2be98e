"""Unit tests of the label choices made from the annotations."""

import unittest

from training.data import choose_go_labels


class FlatOntology:
    """Ontology stand-in whose terms have no ancestors and are all molecular functions."""

    def propagate(self, terms):
        return list(terms)

    def aspect(self, term):
        return "F"


def record(split, terms):
    return {"split": split, "terms": {"C": [], "F": terms, "P": []}}


class ChooseGoLabelsTest(unittest.TestCase):
    CONFIG = {"go_labels": 6, "go_max_frequency": 1.0, "go_min_count": 1}

    def test_terms_with_equal_counts_go_in_term_order(self):
        # GO:0000003 is seen first, so a first-seen order would rank it above GO:0000002.
        records = [record("train", ["GO:0000003", "GO:0000001"]), record("train", ["GO:0000002", "GO:0000001"]),
                   record("train", ["GO:0000003"]), record("train", ["GO:0000002"])]
        self.assertEqual(choose_go_labels(records, FlatOntology(), self.CONFIG), ["GO:0000001", "GO:0000002"])

    def test_quota_counts_training_proteins_only(self):
        records = [record("train", ["GO:0000005"]), record("train", ["GO:0000004", "GO:0000005"]),
                   record("train", ["GO:0000006"]), record("test", ["GO:0000006", "GO:0000007"]),
                   record("test", ["GO:0000007"])]
        config = dict(self.CONFIG, go_labels=5)
        # Quotas of 2 for C and F, 1 for P: the molecular-function share is 2 terms.
        self.assertEqual(choose_go_labels(records, FlatOntology(), config), ["GO:0000005", "GO:0000004"])


if __name__ == "__main__":
    unittest.main()
