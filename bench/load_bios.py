"""How long a 100k-biography file takes to load, and how much memory, in the forms people have.

    python bench/load_bios.py [--lines 100000] [--dir /tmp/bios]

Writes an unlabeled haystack file (name, bio, num_tokens: the published haystack form) and a
labeled file whose labels are written the way an LLM writes them ("1951", "yes", " French "),
then, each in a fresh process, measures:
  * scenario: BioNeedle.check() on the pair (every line read and validated), then the grid of a
    4k-token length (the haystack read lazily, only as far as needed) and the null baseline's labels,
    with the unlabeled haystack and again with the LLM-labeled file as the haystack;
  * check: `harness data check`'s pass over the labeled file (words, duplicates, normalisations);
and prints wall seconds and the process's peak RSS above the interpreter's own.
The biographies are 2,000 synthetic ones repeated under new names (generating 100k takes minutes).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _llm_style(labels: dict, rng: random.Random) -> dict:
    out = dict(labels)
    out["nationality"] = rng.choice(
        [labels["nationality"], labels["nationality"].title(), f" {labels['nationality']} "]
    )
    born = labels["date_of_birth"]
    out["date_of_birth"] = {k: (str(v) if v else None) for k, v in born.items()}
    if not any(labels["date_of_death"].values()):
        out["date_of_death"] = None
    out["sportsperson"] = "yes" if labels["sportsperson"] else "no"
    return out


def write_files(folder: Path, lines: int) -> tuple[Path, Path, Path]:
    from scenarios.bio_needle.generator import BioGenerator

    folder.mkdir(parents=True, exist_ok=True)
    hay, labeled, needles = folder / "haystack.jsonl", folder / "labeled.jsonl", folder / "needles.jsonl"
    g = BioGenerator(seed=3)
    base = g.records("haystack", 2000)
    rng = random.Random(0)
    with open(hay, "w") as h, open(labeled, "w") as lab:
        for i in range(lines):
            r = base[i % len(base)]
            name = f"{r.name} {i}"  # new people, same prose
            bio = r.bio.replace(r.name, name)
            h.write(json.dumps({"name": name, "bio": bio, "num_tokens": len(bio) // 4}) + "\n")
            lab.write(json.dumps({"name": name, "bio": bio, "json": _llm_style(r.labels.model_dump(), rng)}) + "\n")
    needles.write_text("".join(r.to_json_line() + "\n" for r in g.records("needles", 8)))
    return hay, labeled, needles


_MEASURE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import scenarios.bio_needle, scenarios.bio_needle.check  # imports are not the file's cost
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
what = {what!r}
if what.startswith("scenario"):
    from scenarios.bio_needle import BioNeedle
    hay = {labeled!r} if what == "scenario, labeled haystack" else {hay!r}
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file={needles!r}))
    sc.check()
    t_check = time.perf_counter() - t
    words = lambda texts: [len(x.split()) for x in texts]
    samples = sc.samples([4000], [0, 50, 100], 4, words)
    labels = sc.reference_labels()
    extra = {{"check_s": round(t_check, 2), "samples": len(samples), "null_source": sc.null_source,
              "haystack_read_lazily": len(sc._files._taken)}}
else:
    from scenarios.bio_needle.check import check_file
    fc = check_file({labeled!r})
    extra = {{"biographies": fc.report.records, "normalised": dict(fc.report.normalised.most_common(3))}}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"what": what, "seconds": round(time.perf_counter() - t, 2),
                  "peak_rss_mb": round(peak / 1024), "peak_rss_mb_above_start": round((peak - base) / 1024, 1), **extra}}))
"""


def measure(what: str, hay: Path, labeled: Path, needles: Path) -> dict:
    code = _MEASURE.format(root=str(ROOT), what=what, hay=str(hay), labeled=str(labeled), needles=str(needles))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/harness-load-bios"))
    args = ap.parse_args()
    t = time.perf_counter()
    hay, labeled, needles = write_files(args.dir, args.lines)
    size = sum(p.stat().st_size for p in (hay, labeled)) / 2**20
    print(f"wrote {args.lines:,} lines twice ({size:.0f} MiB) in {time.perf_counter() - t:.1f} s")
    for what in ("scenario", "scenario, labeled haystack", "check"):
        print(json.dumps(measure(what, hay, labeled, needles)))
    print(f"(interpreter peak RSS here: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
