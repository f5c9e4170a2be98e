"""Build the bundled model: extract → labels → MMseqs2 split → train → ONNX → evaluate → manifest.

Usage (from the repository root, with Debian's python3):
    python3 -m training.build --config training/configs/tiny.json --out models/bitnet-protein-tiny
    python3 -m training.build --smoke
Each step caches its output under training/work/; --redo STEP recomputes that step and all later ones.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from . import data, domains
from .evaluate import evaluate, evaluation_sets, predict, unigram_perplexity
from .export import OPSET, export_onnx, reference_document, reference_entry, write_reference, write_reference_document
from .model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, VOCAB, count_parameters
from .domain_head import domain_head_proteins, fit_domain_head
from .model_card import write_model_card
from .pooled_heads import fit_pooled_heads, network_states, pooled_head_proteins, set_pooling
from .quantize import quantize_model
from .restore import load_network, restore_checkpoints
from .shards import processes_of
from .train import build_model, read_progress_schedule, train

log = logging.getLogger("training.build")

TRAINING_DIR = Path(__file__).resolve().parent
# The exporter's graph (ternary int8 codes dequantized to float32 in the graph) is kept as the
# source of every kernel format of training.quantize; the daemon loads the int8 integer-kernel
# rewrite, the fastest format measured on x86_64 (docs/benchmarks.md, "BitLinear kernel formats").
EXPORTED_ONNX = "model.onnx"
RUNTIME_ONNX = "model.int8.onnx"
RUNTIME_FORMAT_NOTE = ("int8: each BitLinear is a MatMulInteger of the per-token int8 activations and the ternary "
                       "int8 codes, times the row scale over the token scale; model.onnx is the exporter's graph with "
                       "the same codes dequantized to float32")


def refit_heads(config: dict, labels_path: Path, checkpoint_dir: Path, ternary: bool,
                domain: bool = True, pooled: bool = True) -> None:
    """Refit the domain head into domain_head.pt and the pooled heads into pooled_heads.pt (each when
    asked and configured) on the frozen network of checkpoint_dir/final.pt (ternary or float).

    The pooled heads' training proteins start with the domain head's, so when both are refitted one
    forward pass over them gives the final states of the one and the pooled states of the other.
    """
    dataset = json.loads(labels_path.read_text())
    meta, records = dataset["meta"], dataset["records"]
    domain = domain and bool(meta.get("domainFamilies")) and "domain_head" in config["train"]
    pooled = pooled and "pooled_heads" in config["train"]
    if not (domain or pooled):
        return
    torch.set_num_threads(config["train"]["threads"])
    model = build_model(config["model"], meta)
    load_network(model, checkpoint_dir / "final.pt", ternary, meta)
    seed = config["seed"]
    domain_proteins = domain_head_proteins(records, config, seed) if "domain_head" in config["train"] else []
    pooled_proteins = pooled_head_proteins(records, config, seed, domain_proteins) if pooled else []
    residue_states, pooled_states, seconds = None, None, 0.0
    if domain and pooled and config["model"]["max_length"] == config["eval"]["eval_length"]:
        started = time.monotonic()
        set_pooling(model, config)
        processes, threads = processes_of(config)
        pooled_states, final = network_states(model, pooled_proteins, config["eval"]["eval_length"],
                                              set(range(len(domain_proteins))), processes=processes, threads=threads)
        residue_states = final[:len(domain_proteins)]
        seconds = time.monotonic() - started
        log.info("network states of %d proteins (%d with final states) in %.0f s, %d process%s",
                 len(pooled_proteins), len(domain_proteins), seconds, processes, "es" if processes > 1 else "")
    if domain:
        summary = fit_domain_head(model, domain_proteins, meta["domainFamilies"], config, seed, residue_states, seconds)
        # Both refits' "seconds" then include the one shared pass.
        summary["sharedStatePass"] = residue_states is not None
        residue_states = None
        torch.save({"domain_head": model.domain_head.state_dict(), "hidden": summary["hidden"],
                    "lookahead": summary["lookahead"], "summary": summary}, checkpoint_dir / "domain_head.pt")
    if pooled:
        validation, _ = evaluation_sets(records, config)
        summary = fit_pooled_heads(model, pooled_proteins, validation,
                                   meta, config, seed, pooled_states, seconds)
        summary["sharedStatePass"] = pooled_states is not None
        heads = {name: getattr(model, f"{name}_head").state_dict() for name in summary["heads"]}
        torch.save({"heads": heads, "hidden": summary["hidden"], "depth": summary["depth"], "summary": summary},
                   checkpoint_dir / "pooled_heads.pt")


def load_domain_head(model, checkpoint_dir: Path) -> dict | None:
    """Put the refitted domain head into model when checkpoint_dir has one; return its summary.

    A file written before the hidden layer and the lookahead existed contains a linear head read at lookahead 0.
    """
    path = checkpoint_dir / "domain_head.pt"
    if model.domain_head is None or not path.exists():
        return None
    saved = torch.load(path)
    model.replace_domain_head(saved.get("hidden", 0), saved.get("lookahead", 0))
    model.domain_head.load_state_dict(saved["domain_head"])
    model.domain_head.eval()
    return saved["summary"]


def load_pooled_heads(model, checkpoint_dir: Path) -> dict | None:
    """Put the refitted pooled heads into model when checkpoint_dir has them; return their summary."""
    path = checkpoint_dir / "pooled_heads.pt"
    if not path.exists():
        return None
    saved = torch.load(path)
    model.replace_pooled_heads(saved["hidden"], saved["depth"], pooling=saved["summary"].get("pooling", "final"))
    for name, state in saved["heads"].items():
        head = getattr(model, f"{name}_head")
        head.load_state_dict(state)
        head.eval()
    return saved["summary"]


def write_runtime_graph(exported: Path, out: Path) -> None:
    graph = quantize_model(onnx.load(str(exported)), "int8")
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    log.info("wrote %s (%d bytes)", out, out.stat().st_size)


POOLING_TEXT = {
    "final": "masked mean of the final hidden states over attention_mask",
    "layers_and_composition": ("masked mean over attention_mask of each layer's output states, the final hidden "
                               "states and the one-hot tokens (the residue composition), side by side; the pooled "
                               "heads standardize it with the training proteins' mean and standard deviation"),
}

STEPS = ["extract", "subset", "cluster", "domains", "labels", "train", "domain_head", "pooled_heads", "export"]


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m training.build", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="JSON configuration (default: training/configs/tiny.json)")
    parser.add_argument("--out", type=Path, help="model folder to write model.onnx, manifest.json and MODEL_CARD.md")
    parser.add_argument("--smoke", action="store_true",
                        help="run the whole pipeline on a small slice with configs/smoke.json (a few minutes on 2 cores)")
    parser.add_argument("--work", type=Path, default=TRAINING_DIR / "work", help="cache folder (default: training/work)")
    parser.add_argument("--redo", choices=STEPS, help="recompute this step and every later one")
    parser.add_argument("--wall-seconds", type=float, help="training wall-clock budget in seconds (overrides the config)")
    parser.add_argument("--threads", type=int, help="torch threads for training and evaluation (overrides the config)")
    parser.add_argument("--processes", type=int,
                        help="training processes that share --threads, each running part of every batch "
                             "(overrides the config's train.processes)")
    parser.add_argument("--max-steps", type=int,
                        help="train exactly this many steps whatever the time taken (overrides the config's max_steps "
                             "and ignores the wall-clock budget), for example the step count of the model a twin is "
                             "compared with")
    parser.add_argument("--progress-from", type=Path, metavar="PROGRESS_JSON",
                        help="take each training step's progress (learning rate and quantization phase) from the "
                             "progress.json of another run, and train as many steps as it has. With --twin, give the "
                             "model's work/NAME/checkpoints/progress.json for a twin on the model's schedule")
    parser.add_argument("--network-from", type=Path, metavar="MODEL_DIR",
                        help="take the trained network and its heads from an exported model folder instead of training "
                             "(its model.onnx stores them); with --redo domain_head or --redo pooled_heads the heads "
                             "are fitted again on exactly that network")
    parser.add_argument("--twin", action="store_true",
                        help="train the full-precision twin (same data, network and schedule, float32 weights and "
                             "activations) into work/NAME/twin/ and stop; the evaluation compares it with the model")
    arguments = parser.parse_args(argv)
    if arguments.progress_from and arguments.max_steps:
        parser.error("--progress-from sets the step count, so leave out --max-steps")
    if arguments.progress_from and arguments.network_from:
        parser.error("--progress-from applies to training, and --network-from trains nothing")
    return arguments


def step_needed(step: str, output: Path, redo: str | None) -> bool:
    if redo is not None and STEPS.index(step) >= STEPS.index(redo):
        return True
    return not output.exists()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine_description(processes: int = 1, threads: int | None = None) -> str:
    """Describe the CPU, torch and how training ran on it: threads, or data-parallel processes of `threads` each."""
    model_name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = threads or torch.get_num_threads()
    work = (f"{threads} threads" if processes == 1
            else f"{processes} data-parallel processes of {threads} thread{'s' if threads != 1 else ''}")
    return f"{os.cpu_count()}-core {platform.machine()} ({model_name}), torch {torch.__version__}, {work}"


def go_train_frequencies(records, meta) -> list[float]:
    """Fraction of training proteins annotated in each label's aspect that carry the label."""
    counts = np.zeros(len(meta["goLabels"]))
    totals = np.zeros(len(meta["goLabels"]))
    aspects = np.array(meta["goAspects"])
    for record in records:
        if record["split"] != "train":
            continue
        known = np.array([a in record["goAspects"] for a in aspects])
        totals += known
        counts += np.array(record["go"]) * known
    return (counts / np.maximum(totals, 1)).tolist()


def write_manifest(out: Path, config: dict, meta: dict, thresholds: dict, metrics: dict, provenance: dict,
                   parameters: int, exported: dict, lookahead: int, pooling: str = "final",
                   state_sum_width: int | None = None) -> dict:
    names = exported["outputs"]
    past_inputs, present_outputs = exported["pastInputs"], exported["presentOutputs"]
    onnx_path = out / RUNTIME_ONNX
    heads = {
        "localization": {
            "output": "localization_logits", "type": "multi_label",
            "labels": meta["localizationLabels"], "thresholds": thresholds["localization"],
            "goTerms": [meta["localizationTerms"][label] for label in meta["localizationLabels"]],
        },
        "go": {
            "output": "go_logits", "type": "multi_label",
            "labels": meta["goLabels"], "names": meta["goNames"], "aspects": meta["goAspects"],
            "thresholds": thresholds["go"],
        },
    }
    if "function_logits" in names:
        heads["function"] = {
            "output": "function_logits", "type": "multi_label",
            "labels": meta["functionLabels"], "thresholds": thresholds["function"],
            "goTerms": [meta["functionTerms"][label] for label in meta["functionLabels"]],
        }
    if "domain_logits" in names:
        details = {f["name"]: f for f in meta["domainFamilyDetails"]}
        heads["domain"] = {
            "output": "domain_logits", "type": "residue_spans",
            "labels": meta["domainFamilies"],
            "accessions": [details[f]["accession"] for f in meta["domainFamilies"]],
            "descriptions": [details[f]["description"] for f in meta["domainFamilies"]],
            "thresholds": thresholds["domain"]["thresholds"],
            "minLength": thresholds["domain"]["minLength"], "maxGap": thresholds["domain"]["maxGap"],
            "lookahead": lookahead,
            "decoding": ("softmax over no-domain and the families per position; the class probabilities of residue j "
                         "are those at the position of residue min(j + lookahead, last residue), so the last "
                         "lookahead residues share the last position's; residues whose family probability "
                         "reaches the family threshold form runs, runs separated by at most maxGap residues merge, "
                         "runs shorter than minLength residues are dropped; score = mean family probability; "
                         "1-based inclusive coordinates"),
        }
    heads["lm"] = {"output": "lm_logits", "type": "next_token"}
    model_config = config["model"]
    manifest = {
        "formatVersion": 1,
        "name": config["name"],
        "modelId": "sha256:" + sha256_of(onnx_path),
        "onnxFile": RUNTIME_ONNX,
        "exportedOnnxFile": EXPORTED_ONNX,
        "weightFormat": RUNTIME_FORMAT_NOTE,
        "createdAt": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "tokenizer": {
            "vocab": VOCAB, "padId": PAD_ID, "bosId": BOS_ID, "eosId": EOS_ID, "unkId": UNK_ID,
            "addBos": True, "addEos": False, "maxLength": model_config["max_length"],
            "unknownResidue": "X",
        },
        "inputs": {"inputIds": "input_ids", "attentionMask": "attention_mask"},
        "prefixCache": {
            "pastKeys": past_inputs[0:-1:2], "pastValues": past_inputs[1:-1:2], "pastStateSum": past_inputs[-1],
            "presentKeys": present_outputs[0:-1:2], "presentValues": present_outputs[1:-1:2],
            "stateSum": present_outputs[-1],
            "heads": model_config["heads"], "headDim": model_config["d_model"] // model_config["heads"],
            "dModel": model_config["d_model"],
            "stateSumWidth": state_sum_width or model_config["d_model"],
            "layout": ("past_key_<i>/past_value_<i> are [batch, heads, past, headDim] float32 keys (after rotary "
                       "embedding) and values of the earlier positions; past_state_sum is [batch, stateSumWidth], "
                       "the sum of their pooled states (architecture.pooling). An empty past has past = 0 and a "
                       "zero state sum. Position numbering continues from past, so input_ids then holds no <bos>"),
        },
        "heads": heads,
        "goGraph": {
            "relations": ["is_a", "part_of"],
            "transitivelyReduced": True,
            "parents": meta["goParents"],
        },
        "architecture": {
            "type": "causal transformer (decoder only), pre-LayerNorm inside each BitLinear, rotary position embeddings",
            "layers": model_config["layers"], "dModel": model_config["d_model"], "heads": model_config["heads"],
            "ffn": model_config["ffn"], "parameters": parameters,
            "weightQuantization": "ternary (-1/0/+1) around the per-row mean with a float32 per-row absmean scale "
                                  "(group = one output row) in every BitLinear (fused QKV, attention output, FFN in/out); "
                                  "stored as int8 initializers and dequantized in the graph",
            "activationQuantization": "int8 per token absmax (fake-quantized in float32) at the input of every BitLinear, after its LayerNorm",
            "fullPrecision": "token embedding, final LayerNorm and the five heads (float32)",
            "pooling": POOLING_TEXT[pooling],
            "onnxOpset": OPSET,
        },
        "training": provenance,
        "metrics": metrics,
    }
    with open(out / "manifest.json", "w") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
    return manifest


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    config_path = arguments.config or TRAINING_DIR / "configs" / ("smoke.json" if arguments.smoke else "tiny.json")
    with open(config_path) as handle:
        config = json.load(handle)
    if arguments.threads:
        config["train"]["threads"] = arguments.threads
    if arguments.processes:
        config["train"]["processes"] = arguments.processes
    wall_seconds = arguments.wall_seconds
    if arguments.max_steps:
        config["train"]["max_steps"] = arguments.max_steps
        wall_seconds = float("inf")
    progress_schedule = None
    if arguments.progress_from:
        progress_schedule = read_progress_schedule(arguments.progress_from)
        config["train"]["max_steps"] = len(progress_schedule)
        wall_seconds = float("inf")
    work = arguments.work
    out = arguments.out or (work / "smoke" / "model" if arguments.smoke else work / config["name"] / "model")
    run_dir = work / config["name"]
    common = work / "common"
    run_dir.mkdir(parents=True, exist_ok=True)
    common.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    seed = config["seed"]
    random.seed(seed)
    torch.manual_seed(seed)
    redo = arguments.redo
    started = time.monotonic()

    proteins = common / "proteins.tsv"
    extract_counts_path = common / "extract_counts.json"
    if step_needed("extract", proteins, redo):
        counts = data.extract_proteins(proteins)
        extract_counts_path.write_text(json.dumps(counts))
    extract_counts = json.loads(extract_counts_path.read_text()) if extract_counts_path.exists() else {}

    subset_fasta, subset_json = run_dir / "subset.fasta", run_dir / "subset.json"
    if step_needed("subset", subset_json, redo):
        data.select_subset(proteins, subset_fasta, subset_json, config["data"], seed)

    cluster_tsv = run_dir / "mmseqs" / "clusters_cluster.tsv"
    if step_needed("cluster", cluster_tsv, redo):
        data.cluster(subset_fasta, run_dir / "mmseqs", config["data"])

    domain_table = run_dir / "hmmsearch" / "domains.domtblout"
    families_path = run_dir / "hmmsearch" / "families.json"
    if step_needed("domains", families_path, redo):
        _, families = domains.run_hmmsearch(subset_fasta, run_dir / "hmmsearch", config["train"]["threads"])
        families_path.write_text(json.dumps(families))

    labels_path = run_dir / "labels.json"
    if step_needed("labels", labels_path, redo):
        assignment, cluster_counts = data.split_clusters(cluster_tsv, config["data"]["split_fractions"], seed)
        meta = data.build_label_set(subset_json, assignment, config["data"], labels_path,
                                    domains.read_domain_table(domain_table), json.loads(families_path.read_text()))
        (run_dir / "split_counts.json").write_text(json.dumps(cluster_counts))
    cluster_counts = json.loads((run_dir / "split_counts.json").read_text())

    if arguments.twin:
        twin_config = dict(config, train=dict(config["train"], full_precision=True))
        twin_dir = run_dir / "twin"
        if step_needed("train", twin_dir / "final.pt", redo):
            train(twin_config, labels_path, twin_dir, wall_seconds, progress_schedule)
        refit_heads(twin_config, labels_path, twin_dir, ternary=False,
                    domain=step_needed("domain_head", twin_dir / "domain_head.pt", redo),
                    pooled=step_needed("pooled_heads", twin_dir / "pooled_heads.pt", redo))
        return 0

    checkpoint_dir = run_dir / "checkpoints"
    final_checkpoint = checkpoint_dir / "final.pt"
    if arguments.network_from:
        restore_checkpoints(config, json.loads(labels_path.read_text())["meta"], arguments.network_from, checkpoint_dir)
    elif step_needed("train", final_checkpoint, redo):
        train(config, labels_path, checkpoint_dir, wall_seconds, progress_schedule)
    train_summary = json.loads((checkpoint_dir / "train_summary.json").read_text())
    refit_heads(config, labels_path, checkpoint_dir, ternary=True,
                domain=step_needed("domain_head", checkpoint_dir / "domain_head.pt", redo),
                pooled=step_needed("pooled_heads", checkpoint_dir / "pooled_heads.pt", redo))

    with open(labels_path) as handle:
        dataset = json.load(handle)
    meta, records = dataset["meta"], dataset["records"]
    model = build_model(config["model"], meta)
    load_network(model, final_checkpoint, ternary=True, meta=meta)
    domain_head_summary = load_domain_head(model, checkpoint_dir)
    pooled_heads_summary = load_pooled_heads(model, checkpoint_dir)
    # Counted after the refits, because the refitted heads can be larger than the trained ones.
    parameters = count_parameters(model)
    exported = export_onnx(model, out / EXPORTED_ONNX)
    write_runtime_graph(out / EXPORTED_ONNX, out / RUNTIME_ONNX)

    eval_config = config["eval"]
    validation, test = evaluation_sets(records, config)
    torch.set_num_threads(config["train"]["threads"])
    log.info("predicting %d validation and %d test proteins", len(validation), len(test))
    processes, threads = processes_of(config)
    validation_predictions = predict(model, validation, eval_config["eval_length"], processes=processes,
                                     threads=threads)
    # The test predictions keep the first 16 positions' outputs for the reference file of model verify.
    test_predictions = predict(model, test, eval_config["eval_length"], reference_positions=16,
                               processes=processes, threads=threads)
    thresholds, metrics = evaluate(meta, validation, validation_predictions, test, test_predictions,
                                   go_train_frequencies(records, meta))
    metrics["lm"]["unigramBaselinePerplexity"] = round(
        unigram_perplexity([r for r in records if r["split"] == "train"], test, eval_config["eval_length"]), 3)
    metrics["validationProteins"] = len(validation)
    metrics["testProteins"] = len(test)
    metrics["evaluatedOn"] = (f"Test split, {len(test)} proteins (random sample of the test clusters), "
                              f"sequences truncated to {eval_config['eval_length']} tokens; "
                              f"thresholds tuned on {len(validation)} validation proteins")
    short_test = [r for r in test if len(r["sequence"]) <= 80][:8]
    write_reference(model, out / "reference.json", short_test, eval_config["eval_length"])
    write_reference_document(run_dir / "reference-test.json", reference_document(
        [reference_entry(record, tokens, outputs, 16)
         for record, tokens, outputs in zip(test, test_predictions["tokens"], test_predictions["outputs"])], 16))

    split_sizes = meta["sequencesPerSplit"]
    command = "python3 -m training.build " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    provenance = {
        "data": f"Debian package metastudent-data {data.package_version()} ({data.DATASET}: GO annotations of UniProt "
                f"proteins as of January 2014; blastdbcmd titles of the CCO, MFO and BPO BLAST databases)",
        "extracted": extract_counts,
        "selection": (f"{config['data']['min_length']}..{config['data']['max_length']} residues, seeded random subset "
                      f"of {sum(split_sizes.values())} proteins (seed {seed})"),
        "split": (f"MMseqs2 easy-linclust at {config['data']['cluster_identity']:.0%} identity, "
                  f"{config['data']['cluster_coverage']:.0%} coverage; whole clusters assigned "
                  f"{'/'.join(str(round(f * 100)) for f in config['data']['split_fractions'])} to train/validation/test"),
        "clusters": cluster_counts,
        "sequencesPerSplit": split_sizes,
        "command": command,
        "config": config,
        "wallSeconds": train_summary["wallSeconds"],
        "steps": train_summary["steps"],
        "sequencesSeen": train_summary["sequencesSeen"],
        "schedule": (f"float32 until {config['train']['int8_from']:.0%} of the run, int8 weights until "
                     f"{config['train']['ternary_from']:.0%}, then ternary weights; int8 activations from the int8 phase on"),
        "machine": train_summary.get("machine") or machine_description(train_summary.get("processes", 1),
                                                                     train_summary.get("threadsPerProcess")),
        "domainHeadRefit": domain_head_summary,
        "pooledHeadsRefit": pooled_heads_summary,
    }
    if train_summary.get("restoredFrom"):
        provenance["networkFrom"] = {"modelId": train_summary["restoredFrom"],
                                     "trainingCommand": train_summary.get("trainingCommand")}
    manifest = write_manifest(out, config, meta, thresholds, metrics, provenance, parameters, exported,
                              model.domain_lookahead, model.pooling, model.pooled_width())
    write_model_card(out, manifest, meta)
    log.info("wrote %s in %.0f s", out, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
