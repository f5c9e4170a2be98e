"""Predictions on held-out splits, threshold tuning on validation, and test metrics."""

from __future__ import annotations

import logging
import math
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from .model import PAD_ID, VOCAB, encode, length_sorted_batches
from .shards import merge_shares, run_in_processes

log = logging.getLogger("training.evaluate")

THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)


def evaluation_sets(records, config: dict) -> tuple[list, list]:
    """Return the seeded random samples of the validation and test splits that every evaluation uses."""
    rng = random.Random(config["seed"])
    validation = [r for r in records if r["split"] == "validation"]
    test = [r for r in records if r["split"] == "test"]
    rng.shuffle(validation)
    rng.shuffle(test)
    return validation[: config["eval"]["max_validation"]], test[: config["eval"]["max_test"]]


def predict(model, records, max_tokens: int, batch_size: int = 32, reference_positions: int | None = None,
            processes: int = 1, threads: int = 1) -> dict:
    """Run the model on records (truncated to max_tokens); return sigmoid scores and LM sums.

    Sequences are sorted by length so batches carry little padding; results come back in input order.
    With `reference_positions`, "outputs" also holds each record's head outputs (logits) as export's
    reference entries keep them: the per-position outputs of its first `reference_positions`
    positions. A real position never attends to the padding on its right, so they are the outputs
    of the record run alone, up to float rounding. With `processes` > 1 the records are shared
    among that many processes of `threads` threads (see shards.py); the LM sums then add up in
    another order.
    """
    if processes > 1 and len(records) >= processes:
        parts = run_in_processes(_predict, model, [{"sequence": record["sequence"]} for record in records],
                                 processes, threads, max_tokens=max_tokens, batch_size=batch_size,
                                 reference_positions=reference_positions)
        return merge_shares(parts, len(records))
    return _predict(model, records, max_tokens, batch_size, reference_positions)


@torch.no_grad()
def _predict(model, records, max_tokens: int, batch_size: int = 32, reference_positions: int | None = None) -> dict:
    from .export import output_names

    model.eval()
    names = output_names(model)
    kept_outputs: list = [None] * len(records)
    token_lists = [encode(r["sequence"])[:max_tokens] for r in records]
    scores: dict[str, list] = {"localization": [None] * len(records), "go": [None] * len(records),
                               "function": [None] * len(records)}
    domain_probabilities: list = [None] * len(records)
    residue_nll: list = [None] * len(records)
    nll_sum = 0.0
    token_count = 0
    started = time.monotonic()
    for batch, (indices, input_ids, attention_mask) in enumerate(length_sorted_batches(token_lists, batch_size)):
        if batch and batch % 20 == 0:
            log.info("predicted %d of %d sequences in %.0f s", batch * batch_size, len(records), time.monotonic() - started)
        outputs = model(input_ids, attention_mask)
        targets = input_ids[:, 1:]
        logits = outputs["lm_logits"][:, :-1]
        nll_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=PAD_ID, reduction="sum").item()
        token_count += int((targets != PAD_ID).sum())
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD_ID, reduction="none")
        for row, index in enumerate(indices):
            residue_nll[index] = float(per_token[row, :len(token_lists[index]) - 1].sum())
        if reference_positions is not None:
            for row, index in enumerate(indices):
                length = min(len(token_lists[index]), reference_positions)
                kept_outputs[index] = {name: (outputs[name][row, :length] if outputs[name].dim() == 3
                                              else outputs[name][row]).numpy().copy() for name in names}
        if "domain_logits" in outputs:
            # Position j + 1 is residue j, and <bos> at position 0 has no residue.
            probabilities = torch.softmax(outputs["domain_logits"], dim=-1).numpy()
            for row, index in enumerate(indices):
                domain_probabilities[index] = shift_domain_rows(probabilities[row, 1:len(token_lists[index])],
                                                                model.domain_lookahead)
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
    result["residueNll"] = residue_nll
    result["residues"] = [len(t) - 1 for t in token_lists]
    if domain_probabilities[0] is not None:
        result["domain"] = domain_probabilities
    if reference_positions is not None:
        result["outputs"] = kept_outputs
        result["tokens"] = token_lists
    return result


def shift_domain_rows(rows: np.ndarray, lookahead: int) -> np.ndarray:
    """Return the domain class probabilities per residue from the head's rows per position.

    rows: [residues, classes], row j at the position of residue j. The head's output at residue
    j + lookahead classifies residue j, so residue j takes row min(j + lookahead, last). The last
    `lookahead` residues all take the last row. The daemon's shiftDomainRows does the same.
    """
    if lookahead == 0 or not len(rows):
        return rows
    return rows[np.minimum(np.arange(len(rows)) + lookahead, len(rows) - 1)]


# Span decoding of the domain head, the same in the daemon: residues whose family probability
# reaches the family's threshold form runs. Runs separated by at most max_gap residues merge, and
# runs shorter than min_length are dropped. A span's score is its mean family probability. The
# manifest stores the min_length and max_gap that tune_domain_decoding picks on validation.
DOMAIN_MIN_LENGTH = 10
DOMAIN_MAX_GAP = 4
# Candidates of tune_domain_decoding, in order of preference on ties.
DOMAIN_MIN_LENGTHS = (10, 20, 30, 50)
DOMAIN_MAX_GAPS = (4, 8, 16)


def decode_spans(probabilities: np.ndarray, thresholds: list[float], min_length: int = DOMAIN_MIN_LENGTH,
                 max_gap: int = DOMAIN_MAX_GAP) -> list[tuple[int, int, int, float]]:
    """Return (family index, start, end, score) with 1-based inclusive coordinates.

    probabilities: [residues, 1 + families], column 0 is "no domain".
    """
    spans = []
    for family, threshold in enumerate(thresholds):
        column = probabilities[:, family + 1]
        inside = np.flatnonzero(column >= threshold)
        if not len(inside):
            continue
        runs = []
        start = previous = int(inside[0])
        for position in inside[1:]:
            position = int(position)
            if position - previous - 1 > max_gap:
                runs.append((start, previous))
                start = position
            previous = position
        runs.append((start, previous))
        for begin, end in runs:
            if end - begin + 1 >= min_length:
                spans.append((family, begin + 1, end + 1, float(column[begin:end + 1].mean())))
    spans.sort(key=lambda span: (span[1], span[0]))
    return spans


def true_spans(record, families: list[str]) -> list[tuple[int, int, int]]:
    index = {name: i for i, name in enumerate(families)}
    return [(index[f], start, min(end, len(record["sequence"]))) for f, start, end, _ in record.get("domains") or []
            if f in index and start <= len(record["sequence"])]


def residue_truth(record, families: list[str], length: int) -> np.ndarray:
    """[length, families] booleans: residue inside a span of the family (overlaps count for both)."""
    truth = np.zeros((length, len(families)), dtype=bool)
    for family, start, end in true_spans(record, families):
        truth[start - 1:min(end, length), family] = True
    return truth


def tune_domain_thresholds(records, probabilities, families: list[str]) -> list[float]:
    """Per family, the grid threshold with the best residue-level F1 on these records."""
    truth = np.concatenate([residue_truth(r, families, len(p)) for r, p in zip(records, probabilities)])
    scores = np.concatenate([p[:, 1:] for p in probabilities])
    return tune_thresholds(truth, scores)


def tune_domain_decoding(records, probabilities, families: list[str]) -> dict:
    """Tune the span decoding on these records: thresholds, then minimum length and maximum gap.

    Per-family thresholds maximize residue-level F1, which rests on many residues and so varies
    less than span F1 over the few proteins with a domain. The minimum length and maximum gap,
    one pair for all families, then maximize pooled span F1 over DOMAIN_MIN_LENGTHS x
    DOMAIN_MAX_GAPS; ties keep the earlier pair.
    """
    thresholds = tune_domain_thresholds(records, probabilities, families)
    best = None
    for min_length in DOMAIN_MIN_LENGTHS:
        for max_gap in DOMAIN_MAX_GAPS:
            f1 = domain_metrics(records, probabilities, families, thresholds, min_length, max_gap)["span"]["f1"]
            if best is None or f1 > best[0]:
                best = (f1, min_length, max_gap)
    return {"thresholds": thresholds, "minLength": best[1], "maxGap": best[2]}


def span_overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start) + 1)


def domain_metrics(records, probabilities, families: list[str], thresholds: list[float],
                   min_length: int = DOMAIN_MIN_LENGTH, max_gap: int = DOMAIN_MAX_GAP) -> dict:
    """Residue-level and span-level precision, recall and F1 per family and pooled (micro).

    Span level: a true span is found when predicted spans of its family cover at least half of it; a
    predicted span is correct when at least half of it lies inside true spans of its family.
    """
    truth = np.concatenate([residue_truth(r, families, len(p)) for r, p in zip(records, probabilities)])
    scores = np.concatenate([p[:, 1:] for p in probabilities])
    predicted_residues = scores >= np.array(thresholds)
    span_counts = np.zeros((len(families), 4), dtype=int)  # found, true, correct, predicted
    for record, probability in zip(records, probabilities):
        predicted = decode_spans(probability, thresholds, min_length, max_gap)
        actual = true_spans(record, families)
        for family, start, end in actual:
            covered = sum(span_overlap(start, end, s, e) for f, s, e, _ in predicted if f == family)
            span_counts[family, 0] += covered * 2 >= end - start + 1
            span_counts[family, 1] += 1
        for family, start, end, _ in predicted:
            inside = sum(span_overlap(start, end, s, e) for f, s, e in actual if f == family)
            span_counts[family, 2] += inside * 2 >= end - start + 1
            span_counts[family, 3] += 1

    def prf(tp_recall, positives, tp_precision, predictions):
        precision = tp_precision / predictions if predictions else None
        recall = tp_recall / positives if positives else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else 0.0)
        return {"precision": None if precision is None else round(precision, 4),
                "recall": None if recall is None else round(recall, 4), "f1": round(f1, 4)}

    result = {"families": {}, "proteins": len(records),
              "proteinsWithDomains": sum(1 for r in records if true_spans(r, families))}
    for column, family in enumerate(families):
        tp = int((truth[:, column] & predicted_residues[:, column]).sum())
        result["families"][family] = {
            "residue": prf(tp, int(truth[:, column].sum()), tp, int(predicted_residues[:, column].sum())),
            "span": prf(*span_counts[column].tolist()),
            "trueSpans": int(span_counts[column, 1]), "predictedSpans": int(span_counts[column, 3]),
        }
    tp = int((truth & predicted_residues).sum())
    result["residue"] = prf(tp, int(truth.sum()), tp, int(predicted_residues.sum()))
    totals = span_counts.sum(axis=0).tolist()
    result["span"] = prf(*totals)
    result["trueSpans"], result["predictedSpans"] = totals[1], totals[3]
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

    if "domain" in test_predictions and meta.get("domainFamilies"):
        families = meta["domainFamilies"]
        decoding = tune_domain_decoding(validation, validation_predictions["domain"], families)
        thresholds["domain"] = decoding
        metrics["domain"] = domain_metrics(test, test_predictions["domain"], families, decoding["thresholds"],
                                           decoding["minLength"], decoding["maxGap"])

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


CAFA_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def information_content(train_records, meta: dict) -> np.ndarray:
    """IC(t) = -log2 P(t | all parents of t), estimated on the training split's propagated labels.

    Parents are the term's direct parents among the labels (the manifest's goParents); a term without
    one is conditioned on its aspect, i.e. on the proteins annotated in that aspect.
    """
    labels = meta["goLabels"]
    index = {term: i for i, term in enumerate(labels)}
    aspects = meta["goAspects"]
    rows = [r for r in train_records if r["goAspects"]]
    truth = np.array([r["go"] for r in rows], dtype=bool)
    known = np.array([[a in r["goAspects"] for a in aspects] for r in rows], dtype=bool)
    ic = np.zeros(len(labels))
    for column, term in enumerate(labels):
        parents = [index[p] for p in meta["goParents"].get(term, []) if p in index]
        condition = known[:, column].copy()
        for parent in parents:
            condition &= truth[:, parent]
        with_term = (truth[:, column] & condition).sum()
        ic[column] = -np.log2((with_term + 1) / (condition.sum() + 1))
    return ic


def smin(truth: np.ndarray, scores: np.ndarray, ic: np.ndarray) -> dict:
    """CAFA Smin: the smallest sqrt(ru^2 + mi^2) over thresholds 0.01..0.99, averaged over proteins."""
    best = {"smin": None, "threshold": None}
    if not len(truth):
        return best
    for threshold in CAFA_THRESHOLDS:
        predicted = scores >= threshold
        remaining = ((truth & ~predicted) * ic).sum(axis=1).mean()
        misinformation = ((predicted & ~truth) * ic).sum(axis=1).mean()
        value = float(np.sqrt(remaining ** 2 + misinformation ** 2))
        if best["smin"] is None or value < best["smin"]:
            best = {"smin": value, "threshold": float(threshold)}
    return best


def aupr(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve over all (protein, term) pairs (average precision)."""
    flat_truth = truth.ravel().astype(bool)
    positives = int(flat_truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores.ravel(), kind="stable")
    hits = flat_truth[order]
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)


def matthews(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    tp = float((truth & predicted).sum())
    tn = float((~truth & ~predicted).sum())
    fp = float((~truth & predicted).sum())
    fn = float((truth & ~predicted).sum())
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else None


def exact_set_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    return float((truth == predicted).all(axis=1).mean()) if len(truth) else None
