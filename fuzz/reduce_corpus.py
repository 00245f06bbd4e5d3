#!/usr/bin/env python3
"""Reduces a fuzz corpus to a small set covering the same edges, to keep in the repo.

`cargo fuzz cmin` keeps every input with a new feature (edge *counts* included), which
leaves thousands of files. This runs the target's libFuzzer merge with edge coverage
only (`-use_counters=0`), reads the per-input edges from its control file, and keeps a
greedy set cover: the input covering most uncovered edges first (the smaller on ties),
until every edge is covered or `--max` inputs are kept.

    python3 fuzz/reduce_corpus.py TARGET [--max 299]      # from the repository root

It rewrites fuzz/corpus/TARGET in place (build the target first: cargo fuzz build).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--max", type=int, default=299)
    ap.add_argument("--target-dir", default=os.path.join(HERE, "target"))
    args = ap.parse_args()
    binary = os.path.join(args.target_dir, "x86_64-unknown-linux-gnu", "release", args.target)
    corpus = os.path.join(HERE, "corpus", args.target)
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(
            [binary, "-merge=1", "-use_counters=0", "-rss_limit_mb=2048",
             f"-merge_control_file={control}", out, corpus],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with open(control) as f:
            lines = f.read().splitlines()
        n = int(lines[0])
        files = lines[2:2 + n]
        cov = {}
        for line in lines[2 + n:]:
            parts = line.split()
            if parts and parts[0] == "COV":
                cov[int(parts[1])] = set(parts[2:])
        sizes = {i: os.path.getsize(files[i]) for i in cov}
        everything = set().union(*cov.values()) if cov else set()
        covered, chosen = set(), []
        while covered != everything and len(chosen) < args.max:
            best = max(cov, key=lambda i: (len(cov[i] - covered), -sizes[i]))
            if not cov[best] - covered:
                break
            chosen.append(best)
            covered |= cov[best]
        keep = {files[i] for i in chosen}
        staged = os.path.join(tmp, "keep")
        os.mkdir(staged)
        for path in keep:
            shutil.copy(path, staged)
        shutil.rmtree(corpus)
        shutil.copytree(staged, corpus)
        total = sum(os.path.getsize(os.path.join(corpus, f)) for f in os.listdir(corpus))
        print(f"{args.target}: kept {len(keep)} of {n} inputs ({total} bytes), "
              f"{len(covered)} of {len(everything)} edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
