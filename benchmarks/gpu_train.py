"""The shape network's training on a single-GPU machine, in one short run (issue 16, item 3).

    . tools/env.sh && python benchmarks/gpu_train.py --out DIR        # planned: under 8 minutes

1. the training windows: ``occflow-make-dataset`` with one worker per core (the same command as
   docs/training.md's, which a 2-core CPU makes in ~20 minutes), and the validation windows;
2. ``--config`` (default ``config/train_planes.yaml``, the shipped shape network's run;
   ``config/train_planes64.yaml`` fine-tunes 64^2 planes from the shipped model) trained on the
   GPU (data loading in worker processes on the cores), the same configuration and seed as the
   CPU run, only faster;
3. into DIR: last.pt and best.pt without optimizer state (ready to ship: they load with
   ``weights_only=True``), log.jsonl, and curve.md (validation IoU at the keyframe against steps,
   and the time each part took).

``--quick`` is a dry run on the CPU (2 shards of 4 windows, 6 steps): the test suite runs it so that the
script keeps working on machines without a GPU. Nothing is asserted about quality here; the
held-out evaluation (``occflow-eval synthetic --checkpoint DIR/best.pt``) decides what ships.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = ["--width", "320", "--height", "240", "--frame-points", "4096", "--window-seconds", "0.1",
           "--gt-frames", "2", "--no-progress"]


def _run(cmd: list[str]) -> float:
    started = time.monotonic()
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.monotonic() - started


def _curve(log: Path) -> list[dict]:
    rows = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if "validation" in entry:
            rows.append({"step": entry["step"], "iou0": entry["validation"]["iou0"],
                         "elapsed_s": entry.get("elapsed_s", 0.0)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for the checkpoints and curve")
    parser.add_argument("--work", default="runs/gpu-train", help="data and run directory")
    parser.add_argument("--quick", action="store_true", help="CPU dry run: 2 shards of 4 windows, 6 steps")
    parser.add_argument("--config", default="config/train_planes.yaml",
                        help="the training configuration (default config/train_planes.yaml)")
    args = parser.parse_args(argv)
    import torch

    if not args.quick and not torch.cuda.is_available():
        print("gpu_train: no CUDA device here (use --quick for a CPU dry run)", file=sys.stderr)
        return 2
    out, work = Path(args.out), (REPO / args.work)
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    cores = os.cpu_count() or 1
    shards, per_shard, device = ("2", "4", "cpu") if args.quick else ("96", "32", "cuda")
    exe = [sys.executable, "-m", "occflow_ros.cli"]
    times = {}
    times["training windows"] = _run(exe + ["make-dataset", "--out", str(work / "train"),
                                            "--seed", "1", "--shards", shards, "--per-shard",
                                            per_shard, "--workers", str(cores), *DATASET])
    times["validation windows"] = _run(exe + ["make-dataset", "--out", str(work / "val"),
                                              "--seed", "2", "--shards", "2", "--per-shard",
                                              per_shard, "--workers", str(min(cores, 2)),
                                              *DATASET])
    import yaml

    settings = yaml.safe_load((REPO / args.config).read_text())
    settings.update(train_data=[str(work / "train")], val_data=[str(work / "val")],
                    out_dir=str(work / "run"), device=device,
                    num_workers=0 if args.quick else max(1, min(12, cores - 2)))
    if args.quick:
        settings.update(steps=6, val_every=3, val_windows=8, warmup_steps=2)
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(settings))
    times["training"] = _run(exe + ["train", "--config", str(config), "--no-progress"])
    run = work / "run"
    from occflow_ros.model import export_checkpoint

    for name in ("last.pt", "best.pt"):
        export_checkpoint(run / name, out / name, overwrite=True)
    shutil.copy(run / "log.jsonl", out / "log.jsonl")
    rows = _curve(run / "log.jsonl")
    lines = ["# Shape network trained on the GPU machine", "",
             f"`python benchmarks/gpu_train.py{' --quick' if args.quick else ''}` on "
             f"{cores} cores, device {device}:", "",
             "| part | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    lines += ["", "| step | validation IoU at the keyframe | elapsed s |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['iou0']:.3f} | {r['elapsed_s']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out / "curve.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
