"""Predictions on held-out splits, threshold tuning on validation, and test metrics."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .model import PAD_ID, VOCAB, encode

log = logging.getLogger("training.evaluate")

THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)


@torch.no_grad()
def predict(model, records, max_tokens: int, batch_size: int = 32) -> dict:
    """Run the model on records (truncated to max_tokens); return sigmoid scores and LM sums.

    Sequences are sorted by length so batches carry little padding; results come back in input order.
    """
    model.eval()
    token_lists = [encode(r["sequence"])[:max_tokens] for r in records]
    order = sorted(range(len(records)), key=lambda i: len(token_lists[i]))
    scores: dict[str, list] = {"localization": [None] * len(records), "go": [None] * len(records),
                               "function": [None] * len(records)}
    nll_sum = 0.0
    token_count = 0
    started = time.monotonic()
    for begin in range(0, len(order), batch_size):
        if begin and begin % (20 * batch_size) == 0:
            log.info("predicted %d of %d sequences in %.0f s", begin, len(order), time.monotonic() - started)
        indices = order[begin:begin + batch_size]
        length = max(len(token_lists[i]) for i in indices)
        input_ids = torch.full((len(indices), length), PAD_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), length), dtype=torch.long)
        for row, index in enumerate(indices):
            tokens = token_lists[index]
            input_ids[row, :len(tokens)] = torch.tensor(tokens)
            attention_mask[row, :len(tokens)] = 1
        outputs = model(input_ids, attention_mask)
        targets = input_ids[:, 1:]
        logits = outputs["lm_logits"][:, :-1]
        nll_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=PAD_ID, reduction="sum").item()
        token_count += int((targets != PAD_ID).sum())
        for head in ("localization", "go", "function"):
            key = f"{head}_logits"
            if key not in outputs:
                continue
            probabilities = torch.sigmoid(outputs[key]).numpy()
            for row, index in enumerate(indices):
                scores[head][index] = probabilities[row]
    result = {head: np.stack(values) for head, values in scores.items() if values and values[0] is not None}
    result["lmNll"] = nll_sum
    result["lmTokens"] = token_count
    return result


def unigram_perplexity(train_records, test_records, max_tokens: int) -> float:
    """Perplexity of a model that predicts every residue with its training-split frequency (a baseline)."""
    counts = np.ones(len(VOCAB))
    for record in train_records:
        counts += np.bincount(encode(record["sequence"])[1:], minlength=len(VOCAB))
    log_probabilities = np.log(counts / counts.sum())
    total, tokens = 0.0, 0
    for record in test_records:
        targets = encode(record["sequence"])[1:max_tokens]
        total -= float(log_probabilities[targets].sum())
        tokens += len(targets)
    return math.exp(total / max(tokens, 1))


def label_ancestor_matrix(labels: list[str], parents: dict[str, list[str]]) -> list[list[int]]:
    """Return, for each label index, the indices of its ancestors among the labels (transitively)."""
    index = {term: i for i, term in enumerate(labels)}
    result = []
    for term in labels:
        seen = set()
        stack = list(parents.get(term, []))
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            stack.extend(parents.get(parent, []))
        result.append(sorted(index[p] for p in seen if p in index))
    return result


def propagate_scores(scores: np.ndarray, ancestors: list[list[int]]) -> np.ndarray:
    """Raise every ancestor's score to at least its descendants' scores (true-path consistency)."""
    result = scores.copy()
    for child, parent_indices in enumerate(ancestors):
        for parent in parent_indices:
            result[:, parent] = np.maximum(result[:, parent], scores[:, child])
    return result


def f1_scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Return (micro F1, macro F1); macro averages over labels with at least one positive."""
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    present = truth.sum(axis=0) > 0
    per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    macro = float(per_label[present].mean()) if present.any() else 0.0
    return float(micro), macro


def tune_thresholds(truth: np.ndarray, scores: np.ndarray) -> list[float]:
    """Pick per label the grid threshold with the best F1 (0.5 for labels without positives)."""
    thresholds = []
    for column in range(truth.shape[1]):
        positives = truth[:, column]
        if positives.sum() == 0:
            thresholds.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for threshold in THRESHOLD_GRID:
            predicted = scores[:, column] >= threshold
            tp = (predicted & positives).sum()
            f1 = 2 * tp / max(predicted.sum() + positives.sum(), 1)
            if f1 > best_f1:
                best, best_f1 = float(threshold), f1
        thresholds.append(best)
    return thresholds


def fmax(truth: np.ndarray, scores: np.ndarray) -> dict:
    """Protein-centric Fmax (CAFA style) over proteins with at least one true label.

    Precision is averaged over proteins with at least one score above the threshold, recall over all.
    """
    keep = truth.sum(axis=1) > 0
    truth, scores = truth[keep], scores[keep]
    best = {"fmax": 0.0, "threshold": None, "proteins": int(keep.sum())}
    if not len(truth):
        return best
    for threshold in np.round(np.arange(0.01, 1.0, 0.01), 2):
        predicted = scores >= threshold
        covered = predicted.sum(axis=1) > 0
        if not covered.any():
            continue
        tp = (predicted & truth).sum(axis=1)
        precision = (tp[covered] / predicted[covered].sum(axis=1)).mean()
        recall = (tp / truth.sum(axis=1)).mean()
        if precision + recall > 0:
            f = 2 * precision * recall / (precision + recall)
            if f > best["fmax"]:
                best = {"fmax": float(f), "threshold": float(threshold), "proteins": int(keep.sum())}
    return best


def class_head_arrays(records, predictions, head: str):
    rows = [i for i, r in enumerate(records) if r[head]]
    truth = np.array([records[i][head] for i in rows], dtype=bool)
    return truth, predictions[head][rows]


def go_aspect_arrays(records, predictions, meta, aspect: str, ancestors):
    columns = [i for i, a in enumerate(meta["goAspects"]) if a == aspect]
    rows = [i for i, r in enumerate(records) if aspect in r["goAspects"]]
    truth = np.array([[records[i]["go"][c] for c in columns] for i in rows], dtype=bool)
    scores = propagate_scores(predictions["go"], ancestors)[rows][:, columns]
    return truth, scores


def evaluate(meta: dict, validation, validation_predictions, test, test_predictions, train_frequencies) -> dict:
    """Tune thresholds on validation and compute test metrics; return (thresholds, metrics)."""
    ancestors = label_ancestor_matrix(meta["goLabels"], meta["goParents"])
    thresholds = {}
    metrics: dict = {}
    for head in ("localization", "function"):
        if head not in test_predictions:
            continue
        truth, scores = class_head_arrays(validation, validation_predictions, head)
        thresholds[head] = tune_thresholds(truth, scores)
        truth, scores = class_head_arrays(test, test_predictions, head)
        micro, macro = f1_scores(truth, scores >= np.array(thresholds[head]))
        metrics[head] = {"microF1": round(micro, 4), "macroF1": round(macro, 4), "proteins": len(truth),
                         "perLabelF1": per_label_f1(truth, scores >= np.array(thresholds[head]),
                                                    meta[f"{head}Labels"])}

    # GO: per-label thresholds on propagated validation scores, Fmax per aspect on test.
    go_rows = [i for i, r in enumerate(validation) if r["goAspects"]]
    validation_scores = propagate_scores(validation_predictions["go"], ancestors)
    go_thresholds = []
    for column, aspect in enumerate(meta["goAspects"]):
        rows = [i for i in go_rows if aspect in validation[i]["goAspects"]]
        truth = np.array([[validation[i]["go"][column]] for i in rows], dtype=bool)
        go_thresholds.extend(tune_thresholds(truth, validation_scores[rows][:, [column]]))
    thresholds["go"] = go_thresholds
    go_metrics = {}
    for aspect, name in (("F", "molecularFunction"), ("P", "biologicalProcess"), ("C", "cellularComponent")):
        truth, scores = go_aspect_arrays(test, test_predictions, meta, aspect, ancestors)
        columns = [i for i, a in enumerate(meta["goAspects"]) if a == aspect]
        result = fmax(truth, scores)
        frequencies = np.tile(np.array(train_frequencies)[columns], (len(truth), 1))
        baseline = fmax(truth, frequencies)
        go_metrics[name] = {"fmax": round(result["fmax"], 4), "threshold": result["threshold"],
                            "proteins": result["proteins"], "labels": len(columns),
                            "frequencyBaselineFmax": round(baseline["fmax"], 4)}
    # All three aspects together: labels of an aspect the protein has no annotations in are left out
    # (score 0 and truth 0), because their truth is unknown.
    rows = [i for i, r in enumerate(test) if r["goAspects"]]
    known = np.array([[a in test[i]["goAspects"] for a in meta["goAspects"]] for i in rows], dtype=bool)
    truth = np.array([test[i]["go"] for i in rows], dtype=bool) & known
    scores = propagate_scores(test_predictions["go"], ancestors)[rows] * known
    frequencies = np.tile(np.array(train_frequencies), (len(rows), 1)) * known
    result = fmax(truth, scores)
    go_metrics["all"] = {"fmax": round(result["fmax"], 4), "threshold": result["threshold"],
                         "proteins": result["proteins"], "labels": len(meta["goLabels"]),
                         "frequencyBaselineFmax": round(fmax(truth, frequencies)["fmax"], 4)}
    metrics["go"] = go_metrics
    metrics["lm"] = {
        "perplexity": round(math.exp(test_predictions["lmNll"] / max(test_predictions["lmTokens"], 1)), 3),
        "tokens": test_predictions["lmTokens"],
    }
    return thresholds, metrics


def per_label_f1(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    result = {}
    for column, label in enumerate(labels):
        tp = int((truth[:, column] & predicted[:, column]).sum())
        denominator = int(truth[:, column].sum() + predicted[:, column].sum())
        result[label] = {"f1": round(2 * tp / denominator, 4) if denominator else None,
                         "positives": int(truth[:, column].sum())}
    return result
