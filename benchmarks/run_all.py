"""The benchmark harness: every question of docs/benchmarks.md measured side by side in one run, and the doc rewritten.

Run from the repository root (this is what ``make bench`` does):

    . tools/env.sh && python benchmarks/run_all.py [--model PATH] [--device auto|cpu|cuda] [--threads N]

Questions (one table each): 1. keyframe + tracking vs per-frame reconstruction; 2. correspondence
baselines (nearest neighbour, Coherent Point Drift); 3. ODE solvers and mesh sizes; 4. I/O
(PointCloud2 decode, output build + serialize); 5. the node end to end over DDS; 6. the GPU (the
same networks on the device chosen with ``select_device``); 7. a tracked frame stage by stage on
one CPU core (``bench_frame.py``). The default sizes finish in well under
15 minutes on a 2-core CPU; progress lines say where the run is. ``--questions`` runs a subset (the
other tables then say "not run"); ``--out`` writes elsewhere than docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from harness import (
    DEFAULT_DFAUST,
    REPO,
    SOLVER_NAMES,
    BenchConfig,
    BenchError,
    Progress,
    Table,
    bench_device,
    describe_machine,
    load_model,
)

__all__ = ["main", "parse_args", "config_from_args", "render_doc"]

QUESTIONS = (1, 2, 3, 4, 5, 6, 7)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from occflow_ros.model import shipped_model_path

    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(shipped_model_path()),
                   help="checkpoint (default: the shipped occflow_ros/weights/occflow_default.pt)")
    p.add_argument("--device", default=d.device, help="auto (default: CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default=d.precision, help="network precision: auto, fp32, fp16, bf16")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch CPU threads here and in the node (0: torch's / the node's default)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="the report to (re)write")
    p.add_argument("--questions", type=int, nargs="+", default=list(QUESTIONS), choices=QUESTIONS)
    p.add_argument("--frames", type=int, default=d.frames, help="synthetic window length (frames)")
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--seed", type=int, default=d.synthetic_seed, help="the synthetic person's seed")
    p.add_argument("--motion", default=d.synthetic_motion, help="the synthetic person's motion")
    p.add_argument("--dfaust", default=str(DEFAULT_DFAUST), help="D-FAUST sequence folder")
    p.add_argument("--no-dfaust", action="store_true", help="only the synthetic sequence")
    p.add_argument("--chamfer-points", type=int, default=d.chamfer_points)
    p.add_argument("--cpd-vertices", type=int, default=d.cpd_vertices,
                   help="keyframe vertices Coherent Point Drift registers (0: skip CPD)")
    p.add_argument("--cpd-iterations", type=int, default=d.cpd_iterations)
    p.add_argument("--sizes", type=int, nargs="+", default=list(d.sizes),
                   help="question 3's keyframe mesh sizes (vertices)")
    p.add_argument("--solvers", nargs="+", default=list(d.solvers), choices=SOLVER_NAMES)
    p.add_argument("--io-repeats", type=int, default=d.io_repeats)
    p.add_argument("--loop-points", type=int, default=d.loop_points)
    p.add_argument("--node-seconds", type=float, default=d.node_seconds,
                   help="length of the live stream of question 5 (0: skip it)")
    p.add_argument("--node-startup-timeout", type=float, default=d.node_startup_timeout)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The validated settings (BenchError names a bad one)."""
    return BenchConfig(
        device=args.device, precision=args.precision, threads=args.threads,
        synthetic_seed=args.seed, synthetic_motion=args.motion, frames=args.frames, fps=args.fps,
        dfaust=None if args.no_dfaust else Path(args.dfaust), chamfer_points=args.chamfer_points,
        cpd_vertices=args.cpd_vertices, cpd_iterations=args.cpd_iterations,
        sizes=tuple(args.sizes), solvers=tuple(args.solvers), io_repeats=args.io_repeats,
        loop_points=args.loop_points, node_seconds=args.node_seconds,
        node_startup_timeout=args.node_startup_timeout)


def _section(table: Table) -> str:
    return f"## {table.title}\n\n{table.markdown()}\n"


def render_doc(*, command: str, machine: dict[str, str], inputs: Sequence[str],
               tables: Sequence[Table], settings: BenchConfig, wall_seconds: float) -> str:
    """docs/benchmarks.md's text: how it was made, the machine, the inputs, the targets at a glance
    and one section per table."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by the benchmark harness; do not edit by hand, rerun it (`make bench`, which runs "
        "`python benchmarks/run_all.py $(BENCH_ARGS)` with tools/env.sh sourced). This file was made "
        "by:",
        "",
        "```bash",
        ". tools/env.sh && " + command,
        "```",
        "",
        f"Total wall time {wall_seconds / 60:.1f} min. All timings are wall clock on the machine "
        "below, which may have been shared: compare rows within one table (they were measured in "
        "the same run, on the same inputs, minutes apart), not across machines. Lengths: "
        "'norm.' = the paper's normalised units (divided by the object's size, the longest side of "
        "its ground-truth bounding box at the keyframe), and centimetres.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines += ["", "## Inputs", ""] + [f"- {i}" for i in inputs]
    lines += ["", f"Sizes of this run: {settings.frames} synthetic frames; CPD on "
              f"{settings.cpd_vertices} vertices with <= {settings.cpd_iterations} EM iterations per "
              f"frame; question 3 with {', '.join(str(s) for s in settings.sizes)} vertices and "
              f"{', '.join(settings.solvers)}; {settings.io_repeats} repeats per I/O measurement; a "
              f"{settings.node_seconds:g} s live stream.", ""]
    targets = [t for table in tables for t in table.targets]
    if targets:
        lines += ["## Targets at a glance", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {t.claim} | {t.measured} | {t.verdict} |" for t in targets]
        lines.append("")
    for table in tables:
        lines.append(_section(table))
    return "\n".join(lines).rstrip() + "\n"


def _not_run(title: str, columns, why: str) -> Table:
    return Table(title, columns, notes=[why])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    progress = Progress()
    try:
        cfg = config_from_args(args)
    except BenchError as e:
        print(f"run_all: {e}", file=sys.stderr)
        return 2
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.monotonic()
    device = bench_device(cfg.device)
    machine = describe_machine(device, cfg.precision)
    questions = set(args.questions)
    progress(f"device {device}; questions {sorted(questions)}; writing {args.out}")

    import bench_tracking as bt
    from bench_frame import Q7_COLUMNS, Q7_TITLE, frame_stages
    from bench_io import Q4_COLUMNS, io_costs
    from bench_node import Q5_COLUMNS, node_end_to_end, node_presets

    checkpoint = None
    if questions & {1, 2, 3, 5, 6}:
        model_path = Path(args.model)
        if not model_path.is_file():
            print(f"run_all: no model at {model_path}. The shipped model is being trained; until it is "
                  "in occflow_ros/weights/, copy a checkpoint (e.g. runs/train/best.pt) somewhere and "
                  "pass --model PATH.", file=sys.stderr)
            return 2
        checkpoint, model_info = load_model(model_path, device)
        machine.update(model_info)

    inputs: list[str] = []
    sequences = []
    if questions & {1, 2, 3, 6}:
        from sequences import dfaust_sequence, synthetic_person

        progress("building the inputs: synthetic person window")
        sequences.append(synthetic_person(cfg.synthetic_seed, cfg.synthetic_motion, frames=cfg.frames,
                                          fps=cfg.fps))
        if cfg.dfaust is not None:
            progress("building the inputs: D-FAUST window")
            sequences.append(dfaust_sequence(cfg.dfaust))
        inputs += [f"{s.name}: {s.description}" for s in sequences]

    tables: list[Table] = []
    results: list = []
    q1 = None
    if questions & {1, 2, 6}:
        q1, results = bt.why_occupancy_flow(checkpoint, sequences, device, precision=cfg.precision,
                                            chamfer_points=cfg.chamfer_points, progress=progress)
    tables.append(q1 if q1 is not None and 1 in questions else _not_run(
        "1. Why Occupancy Flow: keyframe + tracking vs per-frame reconstruction", bt.Q1_COLUMNS,
        "Not run (--questions)."))
    if 2 in questions:
        tables.append(bt.correspondence_baselines(results, cpd_vertices=cfg.cpd_vertices,
                                                  cpd_iterations=cfg.cpd_iterations,
                                                  progress=progress))
    else:
        tables.append(_not_run("2. Correspondence baselines", bt.Q2_COLUMNS, "Not run (--questions)."))
    if 3 in questions:
        tables.append(bt.solvers_and_sizes(checkpoint, sequences, device, precision=cfg.precision,
                                           sizes=cfg.sizes, solvers=cfg.solvers, progress=progress))
    else:
        tables.append(_not_run("3. Solvers and mesh sizes", bt.Q3_COLUMNS, "Not run (--questions)."))
    if 4 in questions:
        tables.append(io_costs(repeats=cfg.io_repeats, loop_points=cfg.loop_points, progress=progress))
    else:
        tables.append(_not_run("4. I/O", Q4_COLUMNS, "Not run (--questions)."))
    if 5 in questions and cfg.node_seconds > 0:
        tables.append(node_end_to_end(args.model, seconds=cfg.node_seconds,
                                      presets=node_presets(cfg.device, cfg.threads),
                                      startup_timeout=cfg.node_startup_timeout, progress=progress))
    else:
        tables.append(_not_run("5. Node end to end", Q5_COLUMNS,
                               "Not run (--questions or --node-seconds 0)."))
    if 6 in questions:
        tables.append(bt.gpu_table(machine, results))
    else:
        tables.append(_not_run("6. GPU", bt.Q6_COLUMNS, "Not run (--questions)."))
    if 7 in questions:
        from occflow_ros.model import limit_cpu_threads

        restore = limit_cpu_threads(1)  # the question is one core's cost (torch and BLAS)
        try:
            tables.append(frame_stages(progress=progress))
        finally:
            restore()
    else:
        tables.append(_not_run(Q7_TITLE, Q7_COLUMNS, "Not run (--questions)."))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine["load average at end"] = f"{load:.2f} (1 min)"
    command = "python benchmarks/run_all.py" + (" " + shlex.join(argv) if argv else "")
    text = render_doc(command=command, machine=machine, inputs=inputs, tables=tables, settings=cfg,
                      wall_seconds=time.monotonic() - started)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)
    progress(f"done: {out} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
