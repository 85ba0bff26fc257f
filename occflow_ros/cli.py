"""Console entry points (thin): each parses arguments and calls one function of a room."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Sequence

__all__ = ["train_main", "main"]


def _load_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SystemExit(f"error: {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"error: {path} must hold a mapping of settings")
    return data


def train_main(argv: Sequence[str] | None = None) -> int:
    """occflow-train: train Occupancy Flow on window shards (synthetic or D-FAUST converted)."""
    from .model import ModelError
    from .training import TrainConfig, TrainError, train

    parser = argparse.ArgumentParser(
        prog="occflow-train",
        description="Train Occupancy Flow on window shards. Multi-GPU: torchrun --nproc_per_node N "
                    "$(which occflow-train) ...")
    parser.add_argument("--config", help="YAML file of TrainConfig settings (CLI flags override)")
    parser.add_argument("--train-data", nargs="+", help="shard files or directories")
    parser.add_argument("--val-data", nargs="+", help="shard files or directories")
    parser.add_argument("--out-dir", help="run directory (must be new unless --resume)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--device")
    parser.add_argument("--resume", action="store_true", help="continue from out_dir/last.pt")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    settings = _load_yaml(args.config) if args.config else {}
    for key in ("train_data", "val_data", "out_dir", "steps", "batch_size", "lr", "seed",
                "val_every", "device"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    try:
        cfg = TrainConfig.from_dict(settings)
        command = " ".join(shlex.quote(a) for a in ["occflow-train", *(argv or sys.argv[1:])])
        summary = train(cfg, resume=args.resume, progress=not args.no_progress, command=command)
    except (TrainError, ModelError, ValueError) as e:
        print(f"occflow-train: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def make_dataset_main(argv: Sequence[str] | None = None) -> int:
    """occflow-make-dataset: write synthetic window shards (simulated depth camera + exact truth)."""
    from .data import DataError, MotionRanges
    from .data.synthetic import SyntheticConfig, write_synthetic_shards

    parser = argparse.ArgumentParser(
        prog="occflow-make-dataset",
        description="Write shards of synthetic windows: depth frames of deforming shapes with exact "
                    "occupancy and correspondences. Shard i is drawn from (seed, i); existing shard "
                    "files are kept, so an interrupted run continues.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--per-shard", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--families", nargs="+", help="shape families (default: all, mostly human)")
    parser.add_argument("--amplitude", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="motion amplitude range (training: 0.5 1.0; unseen: 1.0 1.2)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        kwargs = {}
        if args.families:
            kwargs["families"] = tuple(args.families)
            kwargs["family_weights"] = None
        if args.amplitude:
            kwargs["ranges"] = MotionRanges(amplitude=tuple(args.amplitude))
        cfg = SyntheticConfig(**kwargs)
        paths = write_synthetic_shards(args.out, seed=args.seed, shards=args.shards,
                                       per_shard=args.per_shard, cfg=cfg, workers=args.workers,
                                       progress=not args.no_progress)
    except DataError as e:
        print(f"occflow-make-dataset: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(paths)} shards in {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """python -m occflow_ros.cli <command> ...: the same entry points under one name."""
    commands = {"train": train_main, "make-dataset": make_dataset_main}
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        print(f"usage: python -m occflow_ros.cli {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
