"""Evaluate the built model against its full-precision twin and the baselines; write the report.

Usage (from the repository root, after `python3 -m training.build` and `python3 -m training.build --twin`; the
bundled model's twin is kept in training/twins/, so its report needs no new twin):
    python3 -m training.report --config training/configs/tiny.json --out docs/model-evaluation.md
    python3 -m training.report --smoke
Every method is scored on the same test proteins, with thresholds tuned on the same validation proteins,
and every table is also broken down by each test protein's best DIAMOND identity to the training split.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import baselines
from .build import TRAINING_DIR, load_domain_head, load_pooled_heads, machine_description
from .evaluate import (
    aupr, domain_metrics, evaluation_sets, exact_set_accuracy, f1_scores, fmax,
    information_content, label_ancestor_matrix, matthews, predict, propagate_scores, smin, tune_domain_decoding,
    tune_thresholds, unigram_perplexity,
)
from .model_card import POOLING_PHRASE
from .restore import load_network
from .shards import processes_of
from .train import build_model

log = logging.getLogger("training.report")

ASPECTS = (("F", "Molecular function (MF)"), ("P", "Biological process (BP)"), ("C", "Cellular component (CC)"))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m training.report", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="JSON configuration (default: training/configs/tiny.json)")
    parser.add_argument("--smoke", action="store_true", help="evaluate the smoke build (configs/smoke.json)")
    parser.add_argument("--work", type=Path, default=TRAINING_DIR / "work", help="cache folder (default: training/work)")
    parser.add_argument("--out", type=Path, help="Markdown report to write (default: work/NAME/model-evaluation.md)")
    parser.add_argument("--model", type=Path, help="built model folder (default: models/NAME, or the smoke build's)")
    parser.add_argument("--threads", type=int, help="torch and DIAMOND threads (default: the config's)")
    parser.add_argument("--twin", type=Path, metavar="DIR",
                        help="folder of the full-precision twin's checkpoints (default: work/NAME/twin, or else "
                             "training/twins/NAME, where the repository keeps the bundled model's twin)")
    return parser.parse_args(argv)


def load_model(config: dict, meta: dict, checkpoint: Path, ternary: bool):
    """Return the network of `checkpoint` with the refitted heads beside it, and the pooled heads' summary or None."""
    model = build_model(config["model"], meta)
    load_network(model, checkpoint, ternary, meta)
    load_domain_head(model, checkpoint.parent)
    pooled_summary = load_pooled_heads(model, checkpoint.parent)
    model.eval()
    return model, pooled_summary


def twin_folder(requested: Path | None, run_dir: Path, name: str) -> Path | None:
    """Find the folder of the twin's final.pt: `requested`, else the build's work folder, else the repository's copy."""
    candidates = [requested] if requested is not None else [run_dir / "twin", TRAINING_DIR / "twins" / name]
    for folder in candidates:
        if (folder / "final.pt").exists():
            return folder
    if requested is not None:
        raise FileNotFoundError(f"{requested / 'final.pt'} not found; --twin names a folder of the twin's checkpoints")
    return None


def missing_twin_heads(folder: Path, config: dict) -> list[str]:
    """Return the refitted-head files that the configuration requests and `folder` does not contain."""
    requested = [name for name, step in (("domain_head.pt", "domain_head"), ("pooled_heads.pt", "pooled_heads"))
              if step in config["train"]]
    return [name for name in requested if not (folder / name).exists()]


def split_rows(bins: list[str]) -> dict[str, list[int]]:
    rows = {"all": list(range(len(bins)))}
    for name, _, _ in baselines.IDENTITY_BINS:
        rows[name] = [i for i, b in enumerate(bins) if b == name]
    return rows


def go_table(test, predictions, meta, ancestors, ic, rows) -> dict:
    """Fmax, Smin and AUPR per aspect over the test proteins annotated in that aspect."""
    result = {}
    scores_all = propagate_scores(predictions["go"], ancestors)
    for aspect, _ in ASPECTS:
        columns = [i for i, a in enumerate(meta["goAspects"]) if a == aspect]
        per_bin = {}
        for name, indices in rows.items():
            keep = [i for i in indices if aspect in test[i]["goAspects"]]
            truth = np.array([[test[i]["go"][c] for c in columns] for i in keep], dtype=bool).reshape(len(keep), len(columns))
            scores = scores_all[keep][:, columns] if keep else np.zeros((0, len(columns)))
            per_bin[name] = {
                "proteins": len(keep),
                "fmax": fmax(truth, scores)["fmax"] if len(keep) else None,
                "smin": smin(truth, scores, ic[columns])["smin"] if len(keep) else None,
                "aupr": aupr(truth, scores) if len(keep) else None,
            }
        result[aspect] = per_bin
    return result


def class_table(test, predictions, head: str, thresholds, rows, labels) -> dict:
    """Exact-set accuracy, micro and macro F1 (and per-class MCC over all) of a multi-label head."""
    result = {}
    for name, indices in rows.items():
        keep = [i for i in indices if test[i][head]]
        if not keep:
            result[name] = {"proteins": 0}
            continue
        truth = np.array([test[i][head] for i in keep], dtype=bool)
        predicted = predictions[head][keep] >= np.array(thresholds)
        micro, macro = f1_scores(truth, predicted)
        result[name] = {"proteins": len(keep), "exact": exact_set_accuracy(truth, predicted), "microF1": micro,
                        "macroF1": macro}
        if name == "all":
            result[name]["mcc"] = {label: matthews(truth[:, c], predicted[:, c]) for c, label in enumerate(labels)}
    return result


def perplexity_table(test, predictions, rows) -> dict:
    result = {}
    for name, indices in rows.items():
        tokens = sum(predictions["residues"][i] for i in indices)
        nll = sum(predictions["residueNll"][i] for i in indices)
        result[name] = {"proteins": len(indices), "perplexity": math.exp(nll / tokens) if tokens else None}
    return result


def unigram_table(train, test, rows, max_tokens: int) -> dict:
    return {name: {"proteins": len(indices),
                   "perplexity": unigram_perplexity(train, [test[i] for i in indices], max_tokens) if indices else None}
            for name, indices in rows.items()}


def evaluate_method(name, validation, validation_predictions, test, test_predictions, meta, ancestors, ic, rows,
                    domain_lookahead: int = 0):
    """All metrics of one method on the test proteins; thresholds tuned on the validation proteins.

    domain_lookahead is the method's domain-head lookahead, reported with the domain decoding.
    """
    started = time.monotonic()
    result = {"go": go_table(test, test_predictions, meta, ancestors, ic, rows)}
    for head in ("localization", "function"):
        truth_rows = [i for i, r in enumerate(validation) if r[head]]
        truth = np.array([validation[i][head] for i in truth_rows], dtype=bool)
        thresholds = tune_thresholds(truth, validation_predictions[head][truth_rows])
        result[head] = class_table(test, test_predictions, head, thresholds, rows, meta[f"{head}Labels"])
    if "domain" in test_predictions and meta.get("domainFamilies"):
        families = meta["domainFamilies"]
        decoding = tune_domain_decoding(validation, validation_predictions["domain"], families)
        result["domain"] = {bin_name: domain_metrics([test[i] for i in indices],
                                                     [test_predictions["domain"][i] for i in indices],
                                                     families, decoding["thresholds"], decoding["minLength"],
                                                     decoding["maxGap"])
                            for bin_name, indices in rows.items()}
        result["domainDecoding"] = dict(decoding, lookahead=domain_lookahead)
    if "residueNll" in test_predictions:
        result["lm"] = perplexity_table(test, test_predictions, rows)
    log.info("evaluated %s in %.0f s", name, time.monotonic() - started)
    return result


def cell(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def bin_header(rows) -> tuple[list[str], str]:
    names = list(rows)
    return names, "| method | " + " | ".join(f"{n} ({len(rows[n])})" for n in names) + " |\n|---|" + "---|" * len(names)


def render(report: dict) -> str:
    rows = report["bins"]
    names, header = bin_header(rows)
    methods = report["methods"]
    out = [f"""# Model evaluation: {report['model']}

Written by `{report['command']}` on {report['machine']} in {report['wallSeconds']} s. Model id
`{report['modelId']}`, {report['modelBytes']:,} bytes on disk.

## Protocol

- Data: {report['data']}
- Split: {report['split']}
- Test proteins: {report['testProteins']}, a seeded random sample of the test clusters; thresholds of every
  method are tuned on {report['validationProteins']} validation proteins (never on test). Sequences are
  read up to {report['evalLength']} tokens.
- Identity bins: each test protein's best identity to any training protein, from `diamond blastp
  --more-sensitive --evalue 1e-3` against the training split; a protein without a hit is in the < 30 % bin.
  Column headers give the number of test proteins in each bin.
- GO: CAFA-style, on the {report['goLabels']} GO terms of the model's head, with true-path-propagated truth and
  scores, protein-centric Fmax over thresholds 0.01 to 0.99 in steps of 0.01 (precision over proteins
  with a prediction, recall over all proteins annotated in the aspect), Smin with information content
  -log2 P(term | parents) estimated on the training split, and AUPR over all (protein, term) pairs.
- Methods: **ternary** is the shipped model (ternary BitLinear weights, int8 activations, evaluated in
  PyTorch with the frozen weights that the ONNX file stores); **full precision** is the twin, the same
  network, data and schedule with float32 weights and activations; **naive** gives every protein each
  term's training frequency; **DIAMOND best hit** transfers the labels of the best-scoring training hit
  annotated in the aspect, scored by its identity; **DIAMOND weighted** scores each label by the bitscore-
  weighted share of the hits (up to 25) that carry it.
"""]
    for aspect, title in ASPECTS:
        out.append(f"## GO {title}: Fmax / Smin / AUPR\n\n{header}")
        for method, values in methods.items():
            cells = []
            for n in names:
                entry = values["go"][aspect][n]
                cells.append(f"{cell(entry['fmax'])} / {cell(entry['smin'], 2)} / {cell(entry['aupr'])}")
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    for head, title in (("localization", "Localization: exact-set accuracy / micro F1 / macro F1"),
                        ("function", "Function: micro F1 / macro F1")):
        out.append(f"## {title}\n\n{header}")
        for method, values in methods.items():
            cells = []
            for n in names:
                entry = values[head][n]
                if not entry.get("proteins"):
                    cells.append("n/a")
                elif head == "localization":
                    cells.append(f"{cell(entry['exact'])} / {cell(entry['microF1'])} / {cell(entry['macroF1'])}")
                else:
                    cells.append(f"{cell(entry['microF1'])} / {cell(entry['macroF1'])}")
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    labels = list(next(iter(methods.values()))["localization"]["all"]["mcc"])
    out.append("## Localization: Matthews correlation per class (all test proteins)\n")
    out.append("| class | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
    for label in labels:
        out.append(f"| {label} | " + " | ".join(cell(m["localization"]["all"]["mcc"][label]) for m in methods.values()) + " |")
    out.append("")
    domain_methods = {m: v for m, v in methods.items() if "domain" in v}
    if domain_methods:
        out.append("## Domains: residue F1 / span F1\n\nA true span is found when predicted spans of its family "
                   "cover at least half of it; a predicted span is correct when at least half of it lies in true "
                   f"spans of its family. Families: {', '.join(report['domainFamilies'])} (Pfam profiles of "
                   "hmmer-examples, hmmsearch --cut_ga).\n\n" + header)
        for method, values in domain_methods.items():
            cells = [f"{cell(values['domain'][n]['residue']['f1'])} / {cell(values['domain'][n]['span']['f1'])}"
                     for n in names]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("\nDecoding, tuned on the validation proteins (thresholds for residue F1, then minimum length "
                   "and maximum gap for span F1); the head's output at residue j + lookahead classifies residue j:\n")
        for method, values in domain_methods.items():
            decoding = values["domainDecoding"]
            out.append(f"- {method}: lookahead {decoding['lookahead']}, minimum length {decoding['minLength']}, "
                       f"maximum gap {decoding['maxGap']}, thresholds "
                       + ", ".join(f"{f} {t}" for f, t in zip(report["domainFamilies"], decoding["thresholds"])))
        out.append("\nPer family, all test proteins (residue precision / recall / F1; span F1; true spans):\n")
        out.append("| family | " + " | ".join(domain_methods) + " |\n|---|" + "---|" * len(domain_methods))
        for family in report["domainFamilies"]:
            parts = []
            for values in domain_methods.values():
                entry = values["domain"]["all"]["families"][family]
                residue = entry["residue"]
                parts.append(f"{cell(residue['precision'])} / {cell(residue['recall'])} / {cell(residue['f1'])}; "
                             f"{cell(entry['span']['f1'])}; {entry['trueSpans']}")
            out.append(f"| {family} | " + " | ".join(parts) + " |")
        out.append("")
    out.append(f"## Next-residue perplexity\n\n{header}")
    for method, values in list(methods.items()) + [("residue frequency", {"lm": report["unigram"]})]:
        if "lm" in values:
            out.append(f"| {method} | " + " | ".join(cell(values["lm"][n]["perplexity"], 2) for n in names) + " |")
    out.append("")
    out.append("## Quantization gap\n\n" + report["gapText"] + "\n")
    out.append("## Training\n\n" + report["trainingText"] + "\n")
    if report.get("onnxText"):
        out.append("## ONNX against PyTorch\n\n" + report["onnxText"] + "\n")
    return "\n".join(out)


def twin_differences(training: dict, twin_summary: dict, twin_pooled: dict | None) -> list[str]:
    """List how the twin's training differs from the model's, beyond the float32 weights and activations."""
    differences = []
    if "steps" not in training:
        return differences
    if twin_summary.get("steps") != training.get("steps"):
        differences.append(f"{twin_summary.get('steps')} training steps against the model's {training.get('steps')}")
    elif twin_summary.get("stoppedBy") != "progress_schedule":
        differences.append("the same step count, but its own learning-rate schedule, not a replay of the model's")
    model_pooled = training.get("pooledHeadsRefit")
    if model_pooled and twin_pooled and twin_pooled.get("proteins") != model_pooled.get("proteins"):
        differences.append(f"pooled heads fitted on {twin_pooled.get('proteins')} training proteins against the "
                           f"model's {model_pooled.get('proteins')}")
    return differences


def gap_text(methods: dict, differences: list[str] | None = None) -> str:
    if "full precision" not in methods:
        return "The full-precision twin was not trained (`python3 -m training.build --twin`), so no gap is reported."
    ternary, twin = methods["ternary"], methods["full precision"]
    parts = []
    for aspect, title in ASPECTS:
        parts.append(f"GO {aspect} Fmax {cell(ternary['go'][aspect]['all']['fmax'])} vs "
                     f"{cell(twin['go'][aspect]['all']['fmax'])}")
    parts.append(f"localization micro F1 {cell(ternary['localization']['all']['microF1'])} vs "
                 f"{cell(twin['localization']['all']['microF1'])}")
    parts.append(f"function micro F1 {cell(ternary['function']['all']['microF1'])} vs "
                 f"{cell(twin['function']['all']['microF1'])}")
    if "domain" in ternary and "domain" in twin:
        parts.append(f"domain residue F1 {cell(ternary['domain']['all']['residue']['f1'])} vs "
                     f"{cell(twin['domain']['all']['residue']['f1'])}")
    parts.append(f"perplexity {cell(ternary['lm']['all']['perplexity'], 2)} vs {cell(twin['lm']['all']['perplexity'], 2)}")
    text = "Ternary against full precision on all test proteins: " + "; ".join(parts) + "."
    if differences:
        text += (" The twin was not trained like the model (" + "; ".join(differences) + "), so these gaps mix "
                 "quantization with those differences.")
    return text


def training_text(manifest: dict, twin_summary: dict | None, config: dict) -> str:
    training = manifest.get("training", {})
    model = config["model"]
    lines = [
        f"- Network: {model['layers']} layers, d_model {model['d_model']}, {model['heads']} heads, FFN {model['ffn']}, "
        f"{manifest.get('architecture', {}).get('parameters', 'n/a')} parameters; batch {config['train']['batch_size']}, "
        f"crops of {config['train']['crop_length']} tokens ({config['train']['long_crop_fraction']:.0%} of batches "
        f"{config['train']['long_crop_length']}).",
    ]
    if training:
        lines.append(f"- Ternary model: {training.get('steps')} steps, {training.get('sequencesSeen')} sequences, "
                     f"{training.get('wallSeconds')} s of training on {training.get('machine')}; schedule: "
                     f"{training.get('schedule')}. Command: `{training.get('command')}`.")
        origin = training.get("networkFrom")
        if origin:
            lines.append(f"- That command took the network from the exported model {origin['modelId']} (`--network-from`), "
                         f"which was trained by `{origin.get('trainingCommand')}`; the steps, sequences and time above "
                         f"are that training run's.")
    if twin_summary:
        # A twin trained for a fixed step count or on a replayed schedule has no wall-clock budget in its summary.
        if twin_summary.get("stoppedBy") == "progress_schedule":
            step_limit = " --progress-from <the model's checkpoints/progress.json>"
        elif "wallBudgetSeconds" in twin_summary and twin_summary["wallBudgetSeconds"] is None:
            step_limit = f" --max-steps {twin_summary['maxSteps']}"
        else:
            step_limit = ""
        processes = twin_summary.get("processes", 1)
        if twin_summary.get("machine"):
            where = f" of training on {twin_summary['machine']}"
        else:
            where = (f" in {processes} data-parallel processes of {twin_summary.get('threadsPerProcess', 1)} thread(s)"
                     if processes > 1 else "")
        lines.append(f"- Full-precision twin: {twin_summary['steps']} steps, {twin_summary['sequencesSeen']} sequences, "
                     f"{twin_summary['wallSeconds']} s{where}, float32 weights and activations throughout. Command: "
                     f"`python3 -m training.build --config <config> --twin{step_limit}`.")
    pooled = training.get("pooledHeadsRefit")
    if pooled:
        lines.append(f"- After training, the model and the twin each get refitted heads on their frozen network: the "
                     f"domain head, and MLP localization, GO and function heads ({pooled['depth']} hidden layers of "
                     f"{pooled['hidden']} units) fitted on the pooled states of {pooled['proteins']} training proteins"
                     f"{POOLING_PHRASE.get(pooled.get('pooling'), '')}, "
                     f"with the epoch chosen on validation loss.")
    return "\n".join(lines)


def onnx_text(path: Path) -> str | None:
    """Quote the output of `bitnet-edge model verify` saved in `path`, when present.

    Its first line is the command that produced it.
    """
    if not path.exists():
        return None
    command, _, output = path.read_text().partition("\n")
    return (f"`{command.lstrip('$ ').strip()}` (onnxruntime-node, the graph the daemon loads, every test protein, "
            f"per-residue outputs at their first 16 positions):\n\n```\n{output.strip()}\n```")


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    config_path = arguments.config or TRAINING_DIR / "configs" / ("smoke.json" if arguments.smoke else "tiny.json")
    config = json.loads(config_path.read_text())
    threads = arguments.threads or config["train"]["threads"]
    torch.set_num_threads(threads)
    started = time.monotonic()
    run_dir = arguments.work / config["name"]
    dataset = json.loads((run_dir / "labels.json").read_text())
    meta, records = dataset["meta"], dataset["records"]
    train_records = [r for r in records if r["split"] == "train"]
    validation, test = evaluation_sets(records, config)
    max_tokens = config["eval"]["eval_length"]

    hits = baselines.run_diamond(train_records, validation + test, run_dir / "diamond", threads)
    bins = [baselines.identity_bin(hits.get(r["accession"], [])) for r in test]
    rows = split_rows(bins)
    ancestors = label_ancestor_matrix(meta["goLabels"], meta["goParents"])
    ic = information_content(train_records, meta)

    predictions = {}
    lookaheads = {}
    model, _ = load_model(config, meta, run_dir / "checkpoints" / "final.pt", ternary=True)
    processes, per_process = processes_of(config, threads)

    def predict_both(network) -> tuple[dict, dict]:
        return tuple(predict(network, records, max_tokens, processes=processes, threads=per_process)
                     for records in (validation, test))

    predictions["ternary"] = predict_both(model)
    lookaheads["ternary"] = model.domain_lookahead
    twin_dir = twin_folder(arguments.twin, run_dir, config["name"])
    twin_pooled = None
    if twin_dir is not None:
        missing = missing_twin_heads(twin_dir, config)
        if missing:
            # Without them the twin would be scored with the linear heads of its training run.
            raise SystemExit(f"the twin in {twin_dir} has no {' or '.join(missing)}; refit its heads first with "
                             f"`python3 -m training.build --config <config> --twin --redo domain_head` on a copy "
                             f"of it in work/NAME/twin/")
        log.info("full-precision twin from %s", twin_dir)
        twin, twin_pooled = load_model(config, meta, twin_dir / "final.pt", ternary=False)
        predictions["full precision"] = predict_both(twin)
        lookaheads["full precision"] = twin.domain_lookahead
    predictions["naive"] = (baselines.frequency_predictions(validation, train_records, meta),
                            baselines.frequency_predictions(test, train_records, meta))
    for label, weighted in (("DIAMOND best hit", False), ("DIAMOND weighted", True)):
        predictions[label] = (baselines.diamond_predictions(validation, hits, train_records, meta, weighted),
                              baselines.diamond_predictions(test, hits, train_records, meta, weighted))

    methods = {name: evaluate_method(name, validation, pair[0], test, pair[1], meta, ancestors, ic, rows,
                                     lookaheads.get(name, 0))
               for name, pair in predictions.items()}
    model_dir = arguments.model or (arguments.work / "smoke" / "model" if arguments.smoke else Path("models") / config["name"])
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    build_training = manifest.get("training", {})
    command = "python3 -m training.report " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = {
        "model": config["name"], "command": command, "machine": machine_description(),
        "modelId": manifest.get("modelId", "n/a"),
        "modelBytes": (model_dir / manifest["onnxFile"]).stat().st_size if manifest else 0,
        "data": build_training.get("data", "metastudent-data"), "split": build_training.get("split", "n/a"),
        "testProteins": len(test), "validationProteins": len(validation), "evalLength": max_tokens,
        "goLabels": len(meta["goLabels"]), "domainFamilies": meta.get("domainFamilies", []),
        "bins": rows, "methods": methods,
        "unigram": unigram_table(train_records, test, rows, max_tokens),
    }
    twin_summary = json.loads((twin_dir / "train_summary.json").read_text()) if twin_dir is not None else None
    differences = twin_differences(build_training, twin_summary, twin_pooled) if twin_summary is not None else []
    report["gapText"] = gap_text(methods, differences)
    report["trainingText"] = training_text(manifest, twin_summary, config)
    report["onnxText"] = onnx_text(run_dir / "onnx-check.txt")
    report["wallSeconds"] = round(time.monotonic() - started)
    out = arguments.out or run_dir / "model-evaluation.md"
    out.write_text(render(report))
    serializable = dict(report, bins={k: len(v) for k, v in rows.items()})
    (run_dir / "evaluation.json").write_text(json.dumps(serializable, indent=1))
    log.info("wrote %s and %s in %d s", out, run_dir / "evaluation.json", report["wallSeconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
