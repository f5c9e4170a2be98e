"""Domain labels: per-residue Pfam spans from hmmsearch with the Pfam HMMs of Debian's hmmer-examples."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("training.domains")

HMM_ROOT = Path(os.environ.get("HMMER_EXAMPLES", "/usr/share/doc/hmmer/examples"))
# Pfam profiles shipped in hmmer-examples (file, family). Every one carries Pfam's gathering
# threshold (GA), and hmmsearch runs with --cut_ga.
PFAM_PROFILES = [
    ("tutorial/Pkinase.hmm", "Pkinase"),
    ("tutorial/fn3.hmm", "fn3"),
    ("testsuite/RRM_1.hmm.gz", "RRM_1"),
    ("testsuite/2OG-FeII_Oxy_3.hmm.gz", "2OG-FeII_Oxy_3"),
    ("testsuite/Caudal_act.hmm.gz", "Caudal_act"),
    ("easel/demotic/examples/example.hmm.gz", "US2"),
    ("easel/demotic/examples/example.hmm.gz", "Glyco_transf_28"),
]
# Left out, with the reason, so the model card can list them.
EXCLUDED_PROFILES = {
    "SMC_N": "gathering threshold -95.8 bits, a HMMER2 score that does not carry over to HMMER3",
    "Patched": "gathering threshold -436.3 bits, a HMMER2 score that does not carry over to HMMER3",
    "LuxC": "gathering threshold -133.5 bits, a HMMER2 score that does not carry over to HMMER3",
    "XYPPX": "a 5-residue repeat motif, shorter than the span decoder's minimum length",
    "globins4": "no Pfam accession and no gathering threshold",
}


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as handle:
            return handle.read()
    return path.read_text()


def split_profiles(text: str) -> dict[str, str]:
    """Split a HMMER3 profile file into {NAME: profile text}; each profile ends with a '//' line."""
    profiles = {}
    current: list[str] = []
    name = None
    for line in text.splitlines(keepends=True):
        current.append(line)
        if line.startswith("NAME "):
            name = line.split()[1]
        if line.strip() == "//":
            if name is not None:
                profiles[name] = "".join(current)
            current, name = [], None
    return profiles


def profile_field(profile: str, key: str) -> str | None:
    for line in profile.splitlines():
        if line.startswith(key + " "):
            return line[len(key):].strip()
    return None


def write_profiles(out_path: Path) -> list[dict]:
    """Write the selected Pfam profiles into one HMM file; return their name, accession, length and GA.

    The shipped files use three HMMER3 format versions (3/b, 3/e, 3/f); hmmconvert rewrites each in
    the current one, since hmmsearch reads one version per file.
    """
    texts: dict[str, str] = {}
    families = []
    for relative, name in PFAM_PROFILES:
        path = HMM_ROOT / relative
        if not path.exists():
            raise SystemExit(f"{path} not found: install Debian's hmmer-examples package")
        profile = split_profiles(_read_text(path))[name]
        gathering = profile_field(profile, "GA")
        if gathering is None:
            raise SystemExit(f"{name} in {path} has no gathering threshold")
        texts[name] = subprocess.run(["hmmconvert", "-", ], input=profile, capture_output=True, text=True,
                                     check=True).stdout
        families.append({
            "name": name,
            "accession": profile_field(profile, "ACC"),
            "description": profile_field(profile, "DESC"),
            "length": int(profile_field(profile, "LENG")),
            "gathering": [float(v) for v in gathering.rstrip(";").split()[:2]],
        })
    out_path.write_text("".join(texts[f["name"]] for f in families))
    return families


def run_hmmsearch(fasta: Path, out_dir: Path, threads: int = 2) -> tuple[Path, list[dict]]:
    """Search every protein of `fasta` with the Pfam profiles at their gathering thresholds."""
    if shutil.which("hmmsearch") is None:
        raise SystemExit("hmmsearch not found: install Debian's hmmer package")
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles = out_dir / "pfam.hmm"
    families = write_profiles(profiles)
    table = out_dir / "domains.domtblout"
    tmp = table.with_suffix(".tmp")
    command = ["hmmsearch", "--cut_ga", "--noali", "--cpu", str(threads), "--domtblout", str(tmp),
               "-o", os.devnull, str(profiles), str(fasta)]
    log.info("running %s", " ".join(command))
    subprocess.run(command, check=True)
    tmp.rename(table)
    return table, families


def read_domain_table(path: Path) -> dict[str, list[list]]:
    """Return accession -> [[family, start, end, score], ...] with 1-based envelope coordinates.

    Overlapping hits of different families are both kept; the label builder resolves overlaps.
    """
    spans: dict[str, list[list]] = {}
    with open(path) as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 22:
                continue
            target, family = fields[0], fields[3]
            score = float(fields[13])
            start, end = int(fields[19]), int(fields[20])
            spans.setdefault(target, []).append([family, start, end, score])
    for entries in spans.values():
        entries.sort(key=lambda entry: (entry[1], -entry[3]))
    return spans


def residue_labels(length: int, spans: list[list], family_index: dict[str, int]) -> list[int]:
    """Per-residue class ids: 0 outside every domain, 1 + family index inside one.

    Where spans of two families overlap, the residue takes the family with the higher domain score.
    """
    labels = [0] * length
    best = [float("-inf")] * length
    for family, start, end, score in spans:
        if family not in family_index:
            continue
        for position in range(max(start, 1) - 1, min(end, length)):
            if score > best[position]:
                best[position] = score
                labels[position] = 1 + family_index[family]
    return labels
