"""Render MODEL_CARD.md from a written manifest."""

from __future__ import annotations

from pathlib import Path


# Phrase naming what the pooled heads average, per pooling mode (model.POOLING_MODES).
POOLING_PHRASE = {
    "final": " (mean of the final states)",
    "layers_and_composition": (" (mean of every layer's output states, of the final states and of the one-hot tokens, "
                               "the residue composition; standardized)"),
}


def _joined(heads: list[str]) -> str:
    """Head names in the order localization, GO, function, as words: "localization, GO and function"."""
    names = [{"go": "GO"}.get(h, h) for h in ("localization", "go", "function") if h in heads]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_model_card(out: Path, manifest: dict, meta: dict) -> None:
    training = manifest["training"]
    architecture = manifest["architecture"]
    metrics = manifest["metrics"]
    config = training["config"]
    size = (out / manifest["onnxFile"]).stat().st_size
    exported_file = manifest.get("exportedOnnxFile")
    exported_size = (out / exported_file).stat().st_size if exported_file else None
    splits = training["sequencesPerSplit"]
    clusters = training["clusters"]["clustersPerSplit"]
    heads = manifest["heads"]

    localization_rows = [
        [label, ", ".join(heads["localization"]["goTerms"][i]), heads["localization"]["thresholds"][i],
         metrics["localization"]["perLabelF1"][label]["f1"], metrics["localization"]["perLabelF1"][label]["positives"]]
        for i, label in enumerate(heads["localization"]["labels"])
    ]
    function_section = ""
    if "function" in heads:
        function_rows = [
            [label, ", ".join(heads["function"]["goTerms"][i]), heads["function"]["thresholds"][i],
             metrics["function"]["perLabelF1"][label]["f1"], metrics["function"]["perLabelF1"][label]["positives"]]
            for i, label in enumerate(heads["function"]["labels"])
        ]
        function_section = (
            f"### function (molecular-function categories)\n\n"
            f"Micro F1 {metrics['function']['microF1']}, macro F1 {metrics['function']['macroF1']} on "
            f"{metrics['function']['proteins']} test proteins with molecular-function annotations.\n\n"
            + _table(["category", "GO terms", "threshold", "test F1", "test positives"], function_rows) + "\n\n"
        )
    go_rows = [
        [name, values["labels"], values["proteins"], values["fmax"], values["threshold"], values["frequencyBaselineFmax"]]
        for name, values in metrics["go"].items()
    ]
    refit = training.get("domainHeadRefit")
    domain_refit_line = ""
    if refit:
        settings = config["train"]["domain_head"]
        hidden = refit.get("hidden", 0)
        shape = f"a {hidden}-unit hidden layer with GELU" if hidden else "a linear layer"
        domain_refit_line = (
            f"- Domain head refit after training: the network frozen (ternary), a new domain head ({shape}) fitted "
            f"alone for {refit['steps']} steps of {settings['batch_residues']} residues with the class-balanced "
            f"weights raised to the power {settings.get('class_weight_power', 1.0)}, on {refit['proteins']} training "
            f"proteins ({refit['proteinsWithDomains']} with a domain), in {refit['seconds']} s. The head reads the "
            f"state {refit.get('lookahead', 0)} residues past the residue it classifies (lookahead).\n")
    pooled = training.get("pooledHeadsRefit")
    pooled_refit_line = ""
    if pooled:
        pooled_refit_line = (
            f"- Pooled heads refit after training: the network frozen, the {_joined(pooled['heads'])} heads replaced "
            f"by MLPs ({pooled['depth']} hidden layers of {pooled['hidden']} units, GELU, dropout {pooled['dropout']}) "
            f"fitted on the pooled states of {pooled['proteins']} training proteins{POOLING_PHRASE.get(pooled.get('pooling'), '')} "
            f"for {pooled['epochs']} epochs, keeping "
            f"epoch {pooled['bestEpoch']}, the one with the lowest loss on the {pooled['validationProteins']} validation "
            f"proteins, in {pooled['seconds']} s.\n")
    domain_limit_line = ""
    if "domain" in metrics:
        domain = metrics["domain"]
        domain_limit_line = (
            f"- The domain head is weak: residue F1 {domain['residue']['f1']} and span F1 {domain['span']['f1']} on the "
            f"test proteins, with {domain['predictedSpans']} spans predicted against {domain['trueSpans']} true ones "
            f"(span precision {domain['span']['precision']}). Only {domain['proteinsWithDomains']} test proteins carry "
            f"one of the families, so these figures are also noisy.\n")
    domain_section = ""
    if "domain" in heads and "domain" in metrics:
        domain = metrics["domain"]
        domain_rows = [
            [family, heads["domain"]["accessions"][i], heads["domain"]["thresholds"][i],
             domain["families"][family]["residue"]["f1"], domain["families"][family]["span"]["f1"],
             domain["families"][family]["trueSpans"]]
            for i, family in enumerate(heads["domain"]["labels"])
        ]
        domain_section = (
            f"### domain (Pfam families per residue)\n\n"
            f"Residue F1 {domain['residue']['f1']}, span F1 {domain['span']['f1']} on {domain['proteins']} test proteins "
            f"({domain['proteinsWithDomains']} with a domain of these families). The head's output at residue "
            f"j + {heads['domain'].get('lookahead', 0)} classifies residue j. Spans are decoded with minimum length "
            f"{heads['domain']['minLength']} and maximum gap {heads['domain']['maxGap']} (chosen on the validation "
            f"proteins for span F1, after thresholds tuned for residue F1); a true span counts as found when "
            f"predicted spans cover half of it.\n\n"
            + _table(["family", "accession", "threshold", "residue F1", "span F1", "test spans"], domain_rows) + "\n\n"
        )

    lookahead = heads["domain"].get("lookahead", 0) if "domain" in heads else 0
    origin = training.get("networkFrom")
    origin_text = (f"\nThat command took its network from the exported model `{origin['modelId']}`, trained by "
                   f"`{origin.get('trainingCommand')}`; the training figures below are that run's." if origin else "")
    text = f"""# {manifest['name']}

A small causal protein language model with BitNet-style ternary weights and three classification
heads (subcellular localization, GO terms, molecular-function category), per-residue Pfam domain
classes and next-residue prediction, small enough for a Raspberry Pi, where bitnet-edge runs it with onnxruntime-node.
It was built by `{training['command']}` from the repository root (see `training/README.md`).{origin_text}

Model id: `{manifest['modelId']}`. Created {manifest['createdAt']}.

## Data

- Source: {training['data']}.
- Proteins in the three databases together: {training['extracted'].get('proteins', 'n/a')}.
- Selection: {training['selection']}.
- Split: {training['split']}.
- Clusters: {training['clusters']['clusters']} (train {clusters['train']}, validation {clusters['validation']}, test {clusters['test']}).
- Proteins: train {splits.get('train', 0)}, validation {splits.get('validation', 0)}, test {splits.get('test', 0)}.
- Labels:
  - localization: 10 classes from cellular-component terms through GO ancestors (table below).
    Only proteins with at least one of the 10 classes are used for this head.
  - go: {len(meta['goLabels'])} GO terms, an equal share per aspect, chosen as the most frequent terms in
    the training split after true-path propagation (is_a and part_of), excluding the three roots and
    terms on more than {config['data']['go_max_frequency']:.0%} of the proteins annotated in their aspect.
    A protein without annotations in an aspect contributes no loss for that aspect's terms.
  - function: {len(meta['functionLabels'])} molecular-function categories through GO ancestors, for proteins with
    molecular-function annotations.
  - domain: {len(heads['domain']['labels']) if 'domain' in heads else 0} Pfam families per residue
    ({', '.join(heads['domain']['labels']) if 'domain' in heads else 'none'}), from `hmmsearch --cut_ga` with the
    Pfam profiles of Debian's hmmer-examples; every protein was searched, so no hit means no domain.
  - lm: the next residue.

## Architecture

- {architecture['type'][0].upper() + architecture['type'][1:]}.
- {architecture['layers']} layers, d_model {architecture['dModel']}, {architecture['heads']} heads, FFN {architecture['ffn']}, GELU; {architecture['parameters']} parameters.
- Weights: {architecture['weightQuantization']}.
- Activations: {architecture['activationQuantization']}.
- Full precision: {architecture['fullPrecision']}.
- Classification heads read the {architecture['pooling']}.
- Tokens: `<pad>` 0, `<bos>` 1, `<eos>` 2, `<unk>` 3, then `{' '.join(manifest['tokenizer']['vocab'][4:24])}`, then `X` for
  any other residue letter. Input is `<bos>` followed by the residues, no `<eos>`, at most
  {manifest['tokenizer']['maxLength']} tokens, padded on the right.
- ONNX opset {architecture['onnxOpset']}. Outputs: {', '.join('`' + h['output'] + '`' for h in heads.values())}.

## Size on disk

{manifest['onnxFile']}, the graph the daemon loads, is {size} bytes; the exporter's graph
{exported_file or 'n/a'} is {exported_size or 'n/a'} bytes. In both the ternary codes take one byte per weight
(int8 initializers, not packed to 2 bits), and the float32 embedding, heads, LayerNorms and
per-row scales make up the rest. Kernel format: {manifest.get('weightFormat', 'codes dequantized in the graph')}.

## Training

- Quantization-aware schedule: {training['schedule']}. Gradients pass the quantizers with the
  straight-through estimator.
- Loss: cross-entropy for the next residue and for the per-residue domain class, plus binary
  cross-entropy for each classification head,
  weights {', '.join(f'{k} {v}' for k, v in config['train']['loss_weights'].items())}.
{domain_refit_line}{pooled_refit_line}- AdamW, peak learning rate {config['train']['lr']}, {config['train']['warmup_steps']} warm-up steps then cosine decay,
  weight decay {config['train']['weight_decay']}, gradient clipping at {config['train']['clip_norm']},
  batch {config['train']['batch_size']}, random crops of {config['train']['crop_length']} tokens
  ({config['train']['long_crop_fraction']:.0%} of the batches use {config['train']['long_crop_length']}).
- {training['steps']} steps, {training['sequencesSeen']} sequences seen, {training['wallSeconds']} s of training wall time
  on {training['machine']}. The run stops at whichever of `train.max_steps` and `train.wall_seconds`
  comes first. On a machine shared with other jobs the number of steps in that time varies.

## Test metrics

Measured on the held-out test clusters by the same command and machine. {metrics['evaluatedOn']}.

### localization

Micro F1 {metrics['localization']['microF1']}, macro F1 {metrics['localization']['macroF1']} on
{metrics['localization']['proteins']} test proteins, with per-class thresholds tuned for F1 on validation.

{_table(['class', 'GO terms', 'threshold', 'test F1', 'test positives'], localization_rows)}

### go

Protein-centric Fmax after max-propagation of scores to label ancestors. The baseline scores each term with
its frequency in the training split.

{_table(['aspect', 'labels', 'test proteins', 'Fmax', 'at threshold', 'frequency baseline Fmax'], go_rows)}

{function_section}{domain_section}### lm

Perplexity {metrics['lm']['perplexity']} over {metrics['lm']['tokens']} predicted residues. Predicting each residue
with its training-split frequency gives {metrics['lm'].get('unigramBaselinePerplexity', 'n/a')}, and a uniform guess over
the 20 amino acids gives 20.

### ONNX export

The build writes `reference.json`, PyTorch outputs for 8 short test proteins. `bitnet-edge model verify`
runs them through onnxruntime-node, in one pass and through the prefix-cache inputs, and prints the
largest difference per output. The int8 activation rounding makes per-residue logits differ more
than pooled ones: where two runtimes sum in a different order, a value at a rounding boundary can
land on the neighbouring int8 step, and the change carries through the later layers.

The full evaluation against the float32 twin, term frequency and DIAMOND, per identity bin, is in
`docs/model-evaluation.md` of the repository (`python3 -m training.report`).

## Known limits

- The annotations date from January 2014 and mix experimental and electronic evidence, so labels
  are incomplete: a missing label is not a negative finding.
- Training crops are at most {config['train']['long_crop_length']} tokens and mostly {config['train']['crop_length']};
  quality on longer inputs, and at positions beyond the crop length, is less certain.
- Training saw {training['sequencesSeen']} sequences, fewer than one pass over the
  {splits.get('train', 0)} training proteins.
{domain_limit_line}- Only the Pfam families listed above are predicted, since hmmer-examples ships no more profiles.
  The model is causal, so a residue's domain class is read from the state {lookahead} residues further
  on and sees no more than that past the residue; the last {lookahead} residues of a sequence share
  the prediction of its last residue.
- The model is small and trained for {training['wallSeconds']} s on a CPU: it is meant for the daemon's
  integration and edge-latency work, not as a substitute for alignment-based annotation.
- Thresholds come from {metrics['validationProteins']} validation proteins, so classes with few positives
  (peroxisome, lysosome/vacuole, Golgi apparatus) have noisy thresholds and low F1.
- Activation quantization is simulated in float32 in the graph (quantize, round, dequantize), so
  ONNX Runtime runs float matrix products on int8-valued inputs rather than integer kernels.
"""
    (out / "MODEL_CARD.md").write_text(text)
