"""The trainer: AdamW with warm-up + cosine decay, clipping, validation, best checkpoint, resume, DDP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.records import load_records
from ..data.windows import WindowDataset, WindowSampling, collate_windows
from ..model import (
    ModelConfig,
    OccupancyFlow,
    SolverConfig,
    load_checkpoint,
    save_checkpoint,
    select_device,
)
from ..model.checkpoint import DEFAULT_NORMALIZATION_CONVENTION, CheckpointError
from .objective import Objective

__all__ = ["TrainError", "TrainConfig", "train"]


NETWORKS = ("spatial_encoder", "decoder", "temporal_encoder", "velocity")
SHAPE_NETWORKS = ("spatial_encoder", "decoder")
OBJECTIVES = ("full", "shape")
# model settings that only size the shape networks: a run that trains those afresh may differ
# from its init_from checkpoint in them (the motion networks still load from it)
_SHAPE_KEYS = ("shape_encoder", "plane_resolution", "plane_channels", "shape_points",
               "decoder_hidden", "decoder_blocks", "local_neighbors", "local_hidden")
# of those, the ones that size no weight: the planes' convolutions and MLPs are the same at any
# resolution and for any number of points, so a run that changes only these starts its shape
# networks from init_from's (fine-tuned at the new resolution) rather than afresh
_SHAPE_WEIGHTLESS = ("plane_resolution", "shape_points")


class TrainError(ValueError):
    """A training setting or situation the trainer refuses (names the key or the file)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoints for provenance."""

    train_data: list[str]  # shard files or directories of shards (see occflow_ros.data.records)
    val_data: list[str]
    out_dir: str
    steps: int = 20_000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    corr_weight: float = 1.0
    seed: int = 0
    val_every: int = 500
    val_windows: int = 64
    log_every: int = 25
    num_workers: int = 0
    device: str = "auto"
    # Fine-tuning: a checkpoint whose weights start this run (fresh optimizer and schedule). Its
    # networks must have this config's sizes; input_points and window_seconds may differ (they
    # change no weight), and so may plane_resolution and shape_points where the run trains the
    # shape networks. Ignored on resume, which continues from out_dir/last.pt.
    init_from: str | None = None
    # The networks this run trains (names of OccupancyFlow's parts: spatial_encoder, decoder,
    # temporal_encoder, velocity); the others keep the weights they start with. None: all.
    trainable: list[str] | None = None
    # "full": the paper's objective (keyframe occupancy, occupancy through the backward flow,
    # correspondences). "shape": the keyframe's occupancy alone, for training the shape networks
    # (trainable defaults to them; the motion networks keep init_from's weights).
    objective: str = "full"
    model: ModelConfig = field(default_factory=ModelConfig)
    solver: SolverConfig = field(default_factory=lambda: SolverConfig("rk4", step_size=0.2))
    sampling: WindowSampling = field(default_factory=WindowSampling)

    def __post_init__(self) -> None:
        checks = {"steps": (1, 10**9), "batch_size": (1, 4096), "warmup_steps": (0, 10**9),
                  "val_every": (1, 10**9), "val_windows": (1, 10**7), "log_every": (1, 10**9),
                  "num_workers": (0, 64)}
        for key, (lo, hi) in checks.items():
            value = getattr(self, key)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise TrainError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
        for key, (lo, hi) in {"lr": (0.0, 1.0), "weight_decay": (0.0, 1.0),
                              "min_lr_ratio": (0.0, 1.0), "grad_clip": (0.0, 1e6),
                              "corr_weight": (0.0, 1e6)}.items():
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise TrainError(f"{key} must be a number in [{lo}, {hi}], got {value!r}")
        if not self.train_data or not self.val_data:
            raise TrainError("train_data and val_data must name at least one shard or directory")
        if self.model.input_points != self.sampling.input_points:
            raise TrainError(f"model.input_points ({self.model.input_points}) must equal "
                             f"sampling.input_points ({self.sampling.input_points})")
        if self.model.window_seconds != self.sampling.window_seconds:
            raise TrainError("model.window_seconds must equal sampling.window_seconds")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise TrainError(f"init_from must be a checkpoint path, got {self.init_from!r}")
        if self.objective not in OBJECTIVES:
            raise TrainError(f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if self.model.shape_points != self.sampling.shape_points:
            raise TrainError(f"model.shape_points ({self.model.shape_points}) must equal "
                             f"sampling.shape_points ({self.sampling.shape_points})")
        if self.objective == "shape":
            if self.trainable is None:
                self.trainable = list(SHAPE_NETWORKS)
            elif not isinstance(self.trainable, (list, tuple)) or \
                    set(self.trainable) - set(SHAPE_NETWORKS):
                raise TrainError(f"objective 'shape' trains only {list(SHAPE_NETWORKS)}, "
                                 f"got trainable {self.trainable!r}")
        if self.trainable is not None:
            bad = [n for n in self.trainable if n not in NETWORKS] if isinstance(
                self.trainable, (list, tuple)) else [self.trainable]
            if bad or not self.trainable:
                raise TrainError(f"trainable must list some of {list(NETWORKS)}, got "
                                 f"{self.trainable!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainError(f"unknown training setting(s) {unknown}; allowed: {sorted(known)}")
        if isinstance(data.get("model"), Mapping):
            data["model"] = ModelConfig.from_dict(data["model"])
        if isinstance(data.get("solver"), Mapping):
            data["solver"] = SolverConfig.from_dict(data["solver"])
        if isinstance(data.get("sampling"), Mapping):
            data["sampling"] = WindowSampling(**data["sampling"])
        return cls(**data)


class _StepSampler(torch.utils.data.Sampler):
    """Global sample indices for steps [start, steps): batch b of step s on rank r is a pure function."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def validate(objective: Objective, loader: torch.utils.data.DataLoader,
             device: torch.device) -> dict[str, float]:
    """Mean IoU at the keyframe and at the window's end, and correspondence L2 (normalised and m)."""
    objective.eval()
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        batch = _to(batch, device)
        out = objective(batch)
        n = batch["inputs"].shape[0]
        values = {"iou0": out["iou0"], "loss": out["loss"]}
        if "corr" in out:
            values.update(iout=out["iout"], corr_l2=out["corr"],
                          corr_l2_m=float(out["corr"]) * float(batch["scale"].mean()))
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + float(value) * n
        count += n
    objective.train()
    return {k: v / max(count, 1) for k, v in sums.items()}


def _val_text(m: Mapping[str, float]) -> str:
    if "iout" not in m:  # the shape objective
        return f"val IoU@0 {m['iou0']:.3f}  loss {m['loss']:.4f}"
    return (f"val IoU@0 {m['iou0']:.3f}  IoU@end {m['iout']:.3f}  corr L2 {m['corr_l2']:.4f} "
            f"({m['corr_l2_m'] * 100:.1f} cm)")


def _score(metrics: Mapping[str, float]) -> float:
    """Higher is better: IoU at the window's end, then correspondence error as a tie-breaker (the
    shape objective: IoU at the keyframe)."""
    if "iout" not in metrics:
        return metrics["iou0"]
    return metrics["iout"] - metrics["corr_l2"]


# model settings that change no weight: a checkpoint trained with other values can start a run
_WEIGHTLESS = ("input_points", "window_seconds")


def _initial_weights(cfg: TrainConfig, device: torch.device
                     ) -> tuple[dict[str, torch.Tensor], bool, bool]:
    """The state dict of ``cfg.init_from``, after checking its networks have ``cfg.model``'s sizes,
    whether this run adds the rigid prior to it, and whether the shape networks start afresh
    (this run trains them and sizes them differently)."""
    try:
        ckpt = load_checkpoint(cfg.init_from, map_location=device)
    except CheckpointError as e:
        raise TrainError(f"init_from: {e}") from None
    mine, theirs = cfg.model.to_dict(), ckpt.model.config.to_dict()
    # the rigid prior adds no weight: a checkpoint without it can start a run with it
    adds_rigid = mine["velocity_rigid"] and not theirs["velocity_rigid"]
    trains_shape = cfg.trainable is not None and set(SHAPE_NETWORKS) <= set(cfg.trainable)
    fresh_shape = trains_shape and any(mine[k] != theirs[k] for k in _SHAPE_KEYS
                                       if k not in _SHAPE_WEIGHTLESS)
    differ = [f"{k} {theirs[k]!r} there, {mine[k]!r} here" for k in mine
              if k not in _WEIGHTLESS and mine[k] != theirs[k]
              and not (adds_rigid and k == "velocity_rigid")
              and not (trains_shape and (fresh_shape or k in _SHAPE_WEIGHTLESS)
                       and k in _SHAPE_KEYS)]
    if differ:
        raise TrainError(f"init_from {cfg.init_from}: its networks differ from this run's model "
                         f"config ({'; '.join(differ)}); set model to the checkpoint's sizes")
    return ckpt.model.state_dict(), adds_rigid, fresh_shape


def _load_initial(model: OccupancyFlow, state: dict[str, torch.Tensor], rigid_added: bool,
                  fresh_shape: bool = False) -> None:
    """Load init_from's weights. rigid_added (the checkpoint's field had no rigid prior, this one
    has): the field's last layer restarts at zero, so the run starts from the rigid poses alone;
    the old field had learnt the body's mean translation, which the poses now carry, and kept it
    would move the body twice. fresh_shape: the shape networks keep their initial weights (another
    design or size than the checkpoint's); only the motion networks load."""
    if fresh_shape:
        prefixes = tuple(f"{name}." for name in SHAPE_NETWORKS)
        state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(prefixes) for k in missing):
            raise TrainError(f"init_from: the motion networks do not match (missing "
                             f"{[k for k in missing if not k.startswith(prefixes)]}, unexpected "
                             f"{unexpected})")
    else:
        model.load_state_dict(state)
    if rigid_added:
        with torch.no_grad():
            model.velocity.fc_out.weight.zero_()
            model.velocity.fc_out.bias.zero_()


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          command: str | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Run (or resume) a training run into ``cfg.out_dir``; returns a summary.

    Writes out_dir/last.pt (every validation, resumable), out_dir/best.pt (best validation score:
    IoU at the window's end, minus correspondence L2), out_dir/log.jsonl and out_dir/config.json.
    A fresh run refuses an out_dir that already holds a run; resume=True continues from last.pt.
    stop_at: stop after this step (saving last.pt) as if interrupted; resume later to continue the
    same schedule (for time-boxed sessions).
    Under torchrun (WORLD_SIZE > 1) every rank trains on different samples and gradients are
    averaged (DistributedDataParallel); rank 0 validates and writes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = select_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    init_state = _initial_weights(cfg, device) if cfg.init_from is not None and not resume else None
    out = Path(cfg.out_dir)
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    if rank == 0:
        if resume and not last_path.is_file():
            raise TrainError(f"{last_path}: nothing to resume from")
        if not resume and out.exists() and any(out.iterdir()):
            raise TrainError(f"{out}: already holds files; choose a new out_dir or resume")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = OccupancyFlow(cfg.model).to(device)
    objective = Objective(model, cfg.solver, cfg.corr_weight,
                          shape_only=cfg.objective == "shape").to(device)
    if cfg.trainable is not None:
        for name in NETWORKS:
            getattr(model, name).requires_grad_(name in cfg.trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    start_step, best = 0, -math.inf
    if init_state is not None:
        _load_initial(model, *init_state)
    if resume:
        ckpt = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(ckpt.model.state_dict())
        optimizer.load_state_dict(ckpt.extra["optimizer"])
        start_step = int(ckpt.extra["step"])
        best = float(ckpt.extra.get("best_score", -math.inf))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg),
                                                      last_epoch=start_step - 1)
    runner: torch.nn.Module = objective
    if world > 1:
        runner = DistributedDataParallel(objective, device_ids=[device.index]
                                         if device.type == "cuda" else None)

    # the rigid prior reads each frame's ICP pose (the shape objective has no motion)
    poses = cfg.model.velocity_rigid and cfg.objective == "full"
    train_set = WindowDataset(load_records(cfg.train_data), cfg.sampling, seed=cfg.seed,
                              train=True, length=10**12, poses=poses)
    val_records = load_records(cfg.val_data)[: cfg.val_windows]
    val_set = WindowDataset(val_records, cfg.sampling, seed=cfg.seed + 1, train=False,
                            poses=poses)
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=_StepSampler(start_step, min(cfg.steps, stop_at or cfg.steps),
                                              cfg.batch_size, rank, world),
        collate_fn=collate_windows, num_workers=cfg.num_workers)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False,
                                             collate_fn=collate_windows, num_workers=0)

    provenance = {"command": command, "config": cfg.to_dict(), "world_size": world,
                  "device": str(device), "torch": str(torch.__version__)}

    def write(path: Path, step: int, metrics: Mapping[str, float] | None) -> None:
        save_checkpoint(path, model, normalization=dict(DEFAULT_NORMALIZATION_CONVENTION,
                                                        margin=cfg.sampling.margin),
                        training=dict(provenance, step=step, validation=dict(metrics or {})),
                        extra={"step": step, "optimizer": optimizer.state_dict(),
                               "best_score": best}, overwrite=True)

    def log(entry: dict) -> None:
        if rank == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")

    started = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not progress or rank != 0,
               desc="train", dynamic_ncols=True)
    step = start_step
    last_metrics: dict[str, float] = {}
    if cfg.init_from is not None and start_step == 0 and rank == 0:
        # where fine-tuning starts from, on this run's validation data
        start_metrics = validate(objective, val_loader, device)
        log({"step": 0, "validation": start_metrics, "init_from": cfg.init_from,
             "elapsed_s": time.monotonic() - started})
        bar.write(f"step 0 ({cfg.init_from}): {_val_text(start_metrics)}")
    objective.train()
    for batch in loader:
        batch = _to(batch, device)
        out_losses = runner(batch)
        optimizer.zero_grad(set_to_none=True)
        out_losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                     "elapsed_s": time.monotonic() - started,
                     **{k: float(v.detach()) for k, v in out_losses.items()}}
            if "iout" in entry:
                bar.set_postfix(loss=f"{entry['loss']:.3f}", iou_t=f"{entry['iout']:.2f}",
                                corr=f"{entry['corr']:.4f}")
            else:
                bar.set_postfix(loss=f"{entry['loss']:.3f}", iou_0=f"{entry['iou0']:.2f}")
            log(entry)
        if step % cfg.val_every == 0 or step == cfg.steps or step == stop_at:
            if rank == 0:
                last_metrics = validate(objective, val_loader, device)
                improved = _score(last_metrics) > best
                if improved:
                    best = _score(last_metrics)
                write(last_path, step, last_metrics)
                if improved:
                    write(best_path, step, last_metrics)
                log({"step": step, "validation": last_metrics, "best": improved,
                     "elapsed_s": time.monotonic() - started})
                bar.write(f"step {step}: {_val_text(last_metrics)}{'  *best*' if improved else ''}")
            if world > 1:
                dist.barrier()
    bar.close()
    if world > 1:
        dist.barrier()
    return {"steps": step, "best_score": best, "validation": last_metrics,
            "wall_s": time.monotonic() - started, "out_dir": str(out)}
