"""Extract sequences and GO annotations from Debian's metastudent-data, derive labels, split by homology."""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("training.data")

DATA_ROOT = Path(os.environ.get("METASTUDENT_DATA", "/usr/share/metastudent-data"))
DATASET = "dataset_201401"
# Each aspect is a separate BLAST database whose titles read "ACCESSION|GO:1,GO:2,...".
ASPECT_DATABASES = {"C": "CCO", "F": "MFO", "P": "BPO"}
ROOTS = {"GO:0005575": "C", "GO:0003674": "F", "GO:0008150": "P"}
# Edges of goGraph.txt used for the true-path rule. The regulates edges are not part of it.
PROPAGATING_RELATIONS = ("is_a", "part_of")

# Localization classes: a protein is in a class when one of its cellular-component terms is the
# listed term or a descendant of it. "ancestry" names the edges followed. Cytoplasm follows is_a only,
# because over part_of every organelle (nucleus excluded) is part of the cytoplasm in GO, and the class
# would then mark nearly every intracellular protein.
LOCALIZATION_CLASSES = [
    ("nucleus", ["GO:0005634"], "is_a+part_of"),
    ("cytoplasm", ["GO:0005737", "GO:0005829"], "is_a"),
    ("extracellular", ["GO:0005576"], "is_a+part_of"),
    ("mitochondrion", ["GO:0005739"], "is_a+part_of"),
    ("cell membrane", ["GO:0005886"], "is_a+part_of"),
    ("endoplasmic reticulum", ["GO:0005783"], "is_a+part_of"),
    ("plastid", ["GO:0009536"], "is_a+part_of"),
    ("Golgi apparatus", ["GO:0005794"], "is_a+part_of"),
    ("lysosome/vacuole", ["GO:0005773", "GO:0005764"], "is_a+part_of"),
    ("peroxisome", ["GO:0005777"], "is_a+part_of"),
]

# Main molecular-function categories (GO release of January 2014; GO:0004872 "receptor activity"
# was the parent of GO:0038023 "signaling receptor activity" then, so both are listed).
FUNCTION_CLASSES = [
    ("oxidoreductase", ["GO:0016491"]),
    ("transferase", ["GO:0016740"]),
    ("hydrolase", ["GO:0016787"]),
    ("lyase", ["GO:0016829"]),
    ("isomerase", ["GO:0016853"]),
    ("ligase", ["GO:0016874"]),
    ("transporter", ["GO:0005215"]),
    ("DNA-binding transcription factor", ["GO:0003700"]),
    ("structural molecule", ["GO:0005198"]),
    ("receptor", ["GO:0004872", "GO:0038023"]),
    ("enzyme regulator", ["GO:0030234"]),
]


def dataset_dir() -> Path:
    return DATA_ROOT / DATASET


def package_version() -> str:
    """Return the installed metastudent-data version as dpkg reports it, or "unknown"."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "metastudent-data"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class GeneOntology:
    """GO graph of the data set: names, aspects and ancestors over is_a and part_of edges."""

    def __init__(self, directory: Path):
        self.parents: dict[str, set[str]] = collections.defaultdict(set)
        self.is_a_parents: dict[str, set[str]] = collections.defaultdict(set)
        # goGraph.txt columns: parent, child, distance, relation.
        with open(directory / "goGraph.txt") as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 4 or fields[3] not in PROPAGATING_RELATIONS:
                    continue
                parent, child = fields[0], fields[1]
                if not (parent.startswith("GO:") and child.startswith("GO:")):
                    continue
                self.parents[child].add(parent)
                if fields[3] == "is_a":
                    self.is_a_parents[child].add(parent)
        self.names: dict[str, str] = {}
        with open(directory / "nameMapping.txt") as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 2:
                    self.names[fields[0]] = fields[1]
        self._ancestors: dict[str, frozenset[str]] = {}
        self._is_a_ancestors: dict[str, frozenset[str]] = {}

    def _closure(self, term: str, parents: dict, cache: dict) -> frozenset[str]:
        """Return term plus all its ancestors (iterative, so deep graphs do not hit the recursion limit)."""
        if term in cache:
            return cache[term]
        seen = {term}
        stack = [term]
        while stack:
            current = stack.pop()
            for parent in parents.get(current, ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        result = frozenset(seen)
        cache[term] = result
        return result

    def ancestors(self, term: str) -> frozenset[str]:
        """Return the term and its ancestors over is_a and part_of."""
        return self._closure(term, self.parents, self._ancestors)

    def is_a_ancestors(self, term: str) -> frozenset[str]:
        return self._closure(term, self.is_a_parents, self._is_a_ancestors)

    def propagate(self, terms) -> set[str]:
        """Apply the true-path rule: return the terms with all their ancestors."""
        result: set[str] = set()
        for term in terms:
            result |= self.ancestors(term)
        return result

    def aspect(self, term: str) -> str | None:
        for root, aspect in ROOTS.items():
            if root in self.ancestors(term):
                return aspect
        return None


def extract_proteins(out_path: Path) -> dict:
    """Dump every protein of the three aspect databases with blastdbcmd into one TSV.

    Columns: accession, sequence, C terms, F terms, P terms (terms comma-separated, as annotated,
    before propagation). Returns counts for the record.
    """
    if shutil.which("blastdbcmd") is None:
        raise SystemExit("blastdbcmd not found: install Debian's ncbi-blast+ package")
    sequences: dict[str, str] = {}
    annotations: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: {"C": set(), "F": set(), "P": set()})
    counts = {}
    for aspect, folder in ASPECT_DATABASES.items():
        database = dataset_dir() / folder / "goasp.fasta"
        log.info("extracting %s with blastdbcmd", database)
        process = subprocess.Popen(
            ["blastdbcmd", "-db", str(database), "-entry", "all", "-outfmt", "%t\t%s"],
            stdout=subprocess.PIPE, text=True, bufsize=1 << 20,
        )
        count = 0
        for line in process.stdout:
            title, _, sequence = line.rstrip("\n").partition("\t")
            accession, _, terms = title.partition("|")
            if not accession or not sequence:
                continue
            count += 1
            sequences.setdefault(accession, sequence)
            annotations[accession][aspect].update(t for t in terms.split(",") if t.startswith("GO:"))
        if process.wait() != 0:
            raise SystemExit(f"blastdbcmd failed on {database} with exit code {process.returncode}")
        counts[folder] = count
    tmp = out_path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        for accession, sequence in sequences.items():
            terms = annotations[accession]
            handle.write("\t".join([accession, sequence] + [",".join(sorted(terms[a])) for a in "CFP"]) + "\n")
    tmp.rename(out_path)
    counts["proteins"] = len(sequences)
    log.info("extracted %d proteins (%s)", len(sequences), counts)
    return counts


def read_proteins(path: Path):
    with open(path) as handle:
        for line in handle:
            accession, sequence, c_terms, f_terms, p_terms = line.rstrip("\n").split("\t")
            yield accession, sequence, {
                "C": [t for t in c_terms.split(",") if t],
                "F": [t for t in f_terms.split(",") if t],
                "P": [t for t in p_terms.split(",") if t],
            }


def select_subset(proteins_path: Path, out_fasta: Path, out_json: Path, config: dict, seed: int) -> dict:
    """Keep proteins within the length range, draw a seeded random subset, write it as FASTA and JSON."""
    low, high = config["min_length"], config["max_length"]
    kept = []
    total = 0
    for accession, sequence, terms in read_proteins(proteins_path):
        total += 1
        if low <= len(sequence) <= high:
            kept.append((accession, sequence.upper(), terms))
    in_range = len(kept)
    rng = random.Random(seed)
    rng.shuffle(kept)
    kept = kept[: config["max_sequences"]]
    with open(out_fasta, "w") as handle:
        for accession, sequence, _ in kept:
            handle.write(f">{accession}\n{sequence}\n")
    with open(out_json, "w") as handle:
        json.dump([{"accession": a, "sequence": s, "terms": t} for a, s, t in kept], handle)
    stats = {"proteins": total, "inLengthRange": in_range, "selected": len(kept)}
    log.info("selected %d of %d proteins with %d..%d residues (%d of %d in range)",
             len(kept), total, low, high, in_range, total)
    return stats


def cluster(fasta: Path, out_dir: Path, config: dict) -> Path:
    """Cluster with MMseqs2 easy-linclust; return the cluster TSV (representative, member)."""
    if shutil.which("mmseqs") is None:
        raise SystemExit("mmseqs not found: install Debian's mmseqs2 package")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "clusters"
    tmp = out_dir / "tmp"
    command = [
        "mmseqs", "easy-linclust", str(fasta), str(prefix), str(tmp),
        "--min-seq-id", str(config["cluster_identity"]), "-c", str(config["cluster_coverage"]),
        "--cov-mode", "0", "--threads", "2", "-v", "1",
    ]
    log.info("running %s", " ".join(command))
    subprocess.run(command, check=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return Path(str(prefix) + "_cluster.tsv")


def split_clusters(cluster_tsv: Path, fractions, seed: int) -> tuple[dict[str, str], dict]:
    """Assign whole clusters to train/validation/test; return accession -> split and counts."""
    members: dict[str, list[str]] = collections.defaultdict(list)
    with open(cluster_tsv) as handle:
        for line in handle:
            representative, member = line.split()
            members[representative].append(member)
    representatives = sorted(members)
    random.Random(seed).shuffle(representatives)
    n = len(representatives)
    n_train = int(round(fractions[0] * n))
    n_validation = int(round(fractions[1] * n))
    assignment = {}
    cluster_counts = {"train": 0, "validation": 0, "test": 0}
    for index, representative in enumerate(representatives):
        if index < n_train:
            split = "train"
        elif index < n_train + n_validation:
            split = "validation"
        else:
            split = "test"
        cluster_counts[split] += 1
        for member in members[representative]:
            assignment[member] = split
    return assignment, {"clusters": n, "clustersPerSplit": cluster_counts}


def class_vector(terms: list[str], ontology: GeneOntology, classes) -> list[int]:
    """Return one 0/1 per class: 1 when a term is the class term or a descendant of it."""
    full = set()
    is_a_only = set()
    for term in terms:
        full |= ontology.ancestors(term)
        is_a_only |= ontology.is_a_ancestors(term)
    vector = []
    for entry in classes:
        class_terms, ancestry = entry[1], (entry[2] if len(entry) > 2 else "is_a+part_of")
        pool = is_a_only if ancestry == "is_a" else full
        vector.append(int(any(t in pool for t in class_terms)))
    return vector


def choose_go_labels(records, ontology: GeneOntology, config: dict) -> list[str]:
    """Pick the most frequent propagated GO terms of the training split, an equal quota per aspect.

    Roots are excluded, and so are terms annotated (after propagation) on more than
    go_max_frequency of the training proteins of their aspect or on fewer than go_min_count.
    """
    counts: dict[str, collections.Counter] = {a: collections.Counter() for a in "CFP"}
    annotated = {a: 0 for a in "CFP"}
    for record in records:
        if record["split"] != "train":
            continue
        for aspect in "CFP":
            terms = record["terms"][aspect]
            if not terms:
                continue
            annotated[aspect] += 1
            counts[aspect].update(ontology.propagate(terms))
    quota = config["go_labels"] // 3
    extra = config["go_labels"] - 3 * quota
    labels = []
    for index, aspect in enumerate("CFP"):
        limit = config["go_max_frequency"] * annotated[aspect]
        # Ties go in term order. The Counter keeps insertion order, and a set of strings iterates in the order
        # of the process's hash seed.
        ranked = sorted(counts[aspect].items(), key=lambda item: (-item[1], item[0]))
        candidates = [
            term for term, count in ranked
            if term not in ROOTS and count <= limit and count >= config["go_min_count"]
            and ontology.aspect(term) == aspect
        ]
        labels.extend(candidates[: quota + (1 if index < extra else 0)])
    return labels


def choose_domain_families(records, spans: dict[str, list[list]], families: list[dict], min_proteins: int) -> list[dict]:
    """Keep the families found in at least min_proteins training proteins (fewer cannot be learned)."""
    counts: collections.Counter = collections.Counter()
    for record in records:
        if record["split"] == "train":
            counts.update({entry[0] for entry in spans.get(record["accession"], [])})
    kept = []
    for family in families:
        family = dict(family, trainingProteins=counts[family["name"]])
        if counts[family["name"]] >= min_proteins:
            kept.append(family)
        else:
            log.info("domain family %s left out: %d training proteins", family["name"], counts[family["name"]])
    return kept


def build_label_set(subset_json: Path, assignment: dict[str, str], config: dict, out_path: Path,
                    domain_spans: dict[str, list[list]] | None = None, domain_families: list[dict] | None = None) -> dict:
    """Attach split and label vectors to every selected protein and save them with the label metadata."""
    ontology = GeneOntology(dataset_dir())
    with open(subset_json) as handle:
        records = json.load(handle)
    for record in records:
        record["split"] = assignment.get(record["accession"], "train")
    go_labels = choose_go_labels(records, ontology, config)
    spans = domain_spans or {}
    families = choose_domain_families(records, spans, domain_families or [], config.get("domain_min_proteins", 20))
    family_names = {f["name"] for f in families}

    go_index = {t: i for i, t in enumerate(go_labels)}
    go_aspects = [ontology.aspect(t) for t in go_labels]
    for record in records:
        terms = record.pop("terms")
        go = [0] * len(go_labels)
        for aspect in "CFP":
            for term in ontology.propagate(terms[aspect]):
                if term in go_index:
                    go[go_index[term]] = 1
        record["go"] = go
        # Aspects without any annotation are unknown, not negative: the loss masks them.
        record["goAspects"] = "".join(a for a in "CFP" if terms[a])
        localization = class_vector(terms["C"], ontology, LOCALIZATION_CLASSES) if terms["C"] else None
        # A protein with cellular-component terms but none of the 10 classes has no usable label.
        record["localization"] = localization if localization and any(localization) else None
        record["function"] = class_vector(terms["F"], ontology, FUNCTION_CLASSES) if terms["F"] else None
        # Every protein went through hmmsearch, so no span means no domain of these families.
        record["domains"] = [entry for entry in spans.get(record["accession"], []) if entry[0] in family_names]

    label_set = set(go_labels)
    parents = {}
    for term in go_labels:
        # Direct links among label terms: label ancestors not implied through another label ancestor.
        ancestors = (ontology.ancestors(term) & label_set) - {term}
        implied = set()
        for ancestor in ancestors:
            implied |= (ontology.ancestors(ancestor) & label_set) - {ancestor}
        direct = sorted(ancestors - implied)
        if direct:
            parents[term] = direct

    splits = collections.Counter(r["split"] for r in records)
    meta = {
        "goLabels": go_labels,
        "goNames": [ontology.names.get(t, t) for t in go_labels],
        "goAspects": go_aspects,
        "goParents": parents,
        "localizationLabels": [c[0] for c in LOCALIZATION_CLASSES],
        "localizationTerms": {c[0]: c[1] for c in LOCALIZATION_CLASSES},
        "functionLabels": [c[0] for c in FUNCTION_CLASSES],
        "functionTerms": {c[0]: c[1] for c in FUNCTION_CLASSES},
        "sequencesPerSplit": dict(splits),
        "withLocalization": collections.Counter(r["split"] for r in records if r["localization"]),
        "withFunction": collections.Counter(r["split"] for r in records if r["function"]),
        "domainFamilies": [f["name"] for f in families],
        "domainFamilyDetails": families,
        "withDomains": collections.Counter(r["split"] for r in records if r["domains"]),
    }
    with open(out_path, "w") as handle:
        json.dump({"meta": meta, "records": records}, handle)
    log.info("labels: %d GO terms, splits %s", len(go_labels), dict(splits))
    return meta
