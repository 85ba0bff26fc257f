"""How much one random input subsample moves the tracking error, and models compared over several.

Run:  . tools/env.sh && python benchmarks/bench_seeds.py [--models A.pt B.pt] [--seeds 6]

Questions 1-2 of ``run_all.py`` track each window once, with the tracker's input subsample drawn
from ``TrackerConfig.seed``; the keyframe mesh, and so every later error, depends on that draw. This
tracks the same windows (the synthetic person and the D-FAUST sequence of those questions, the same
evaluation settings) once per seed and prints the correspondence L2 over the later frames per seed,
their mean and range, next to the keyframe mesh left still. Compare models by the means.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

import bench_tracking as bt
from harness import DEFAULT_DFAUST
from sequences import dfaust_sequence, synthetic_person


def main() -> None:
    from occflow_ros.model import load_checkpoint, shipped_model_path
    from occflow_ros.tracking import Tracker

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[str(shipped_model_path())])
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--dfaust", default=str(DEFAULT_DFAUST), help="D-FAUST sequence folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sequences = [("synthetic person", synthetic_person())]
    if Path(args.dfaust).is_dir():
        sequences.append(("D-FAUST", dfaust_sequence(args.dfaust)))
    print("| sequence | model | corr. L2 later frames per seed (cm) | mean (cm) | range (cm) | "
          "keyframe mesh left still, mean (cm) |")
    print("|---|---|---|---|---|---|")
    for name, seq in sequences:
        for path in args.models:
            checkpoint = load_checkpoint(path)
            base = bt.make_tracker(checkpoint, torch.device("cpu")).config
            tracked, still = [], []
            for seed in range(args.seeds):
                tracker = Tracker(checkpoint, dataclasses.replace(base, seed=seed), device="cpu")
                tracks = bt.vertex_tracks(bt.track_window(tracker, seq))
                tracked.append(100 * bt._later_mean(bt.corr_errors(tracks, seq)))
                still.append(100 * bt._later_mean(bt.corr_errors([tracks[0]] * len(tracks), seq)))
            print(f"| {name} | {path} | {' '.join(f'{v:.2f}' for v in tracked)} | "
                  f"{np.mean(tracked):.2f} | {min(tracked):.2f}-{max(tracked):.2f} | "
                  f"{np.mean(still):.2f} |", flush=True)


if __name__ == "__main__":
    main()
