"""The GPU check: the tracker and the node on one CUDA GPU with the GPU preset, in one short run.

Run on a machine with a CUDA GPU (the performance issue's item 6):

    . tools/env.sh && python benchmarks/gpu_check.py --out DIR        # about 3 minutes

What it measures, on the demo's person (a simulated 640x480 RealSense view, 15 Hz of frames fed
as fast as they are processed) and the shipped model:

1. the machine: GPU, torch and CUDA versions, CPU cores;
2. a tracked frame stage by stage with the GPU preset (config/preset_gpu.yaml: 128^3 keyframes
   decimated to 3000 vertices, fp16 networks), the deformation graph carrying the mesh (the
   default): the table of ``make bench``'s question 7, plus the keyframes meshed in line, whose p50
   is what a 128^3 keyframe costs;
3. the same with the velocity field carrying the mesh (``tracker.deformation.enabled: false``):
   how fast the networks alone track on the GPU (the graph's fit is numpy on one CPU core);
4. the node end to end (``make demo``'s stream: 10 s at 30 Hz over Fast DDS) with the GPU preset.

The goals (performance issue): tracked frames at 100 Hz or more, a 128^3 keyframe under 100 ms.
Each is printed met / NOT met; nothing is asserted. The report goes to stdout and, with ``--out``,
to DIR/gpu_check.md and DIR/gpu_check.json (the device tool brings DIR back).

``--quick`` is a dry run of this script on the CPU (short scenes, no node run): the test suite runs
it so that the script keeps working on machines that have no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from bench_frame import KEYFRAME, WHOLE, frame_stages
from harness import Table

GOAL_TRACKED_HZ = 100.0
GOAL_KEYFRAME_MS = 100.0


def machine(device: str) -> Dict[str, Any]:
    """What the run ran on."""
    out: Dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                           "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda)
    return out


def _row(table: Table, stage: str) -> Optional[Dict[str, Any]]:
    return next((r for r in table.rows if r["stage"] == stage), None)


def goals(graph: Table, field: Table) -> List[Dict[str, Any]]:
    """The issue's two goals judged on the measured tables (tracked frames: the faster carrier)."""
    out = []
    rates = {}
    for name, table in (("deformation graph", graph), ("velocity field", field)):
        whole = _row(table, WHOLE)
        if whole is not None:
            rates[name] = 1e3 / whole["p50"]
    if rates:
        best = max(rates, key=rates.get)
        out.append({"goal": f"tracked frames at {GOAL_TRACKED_HZ:g} Hz or more (1 / p50 of a whole "
                            "frame)",
                    "measured": ", ".join(f"{k} {v:.0f} Hz" for k, v in rates.items()),
                    "met": rates[best] >= GOAL_TRACKED_HZ})
    key = _row(graph, KEYFRAME) or _row(field, KEYFRAME)
    out.append({"goal": f"a 128^3 keyframe under {GOAL_KEYFRAME_MS:g} ms (p50, meshed in line)",
                "measured": "no keyframe after the first" if key is None else f"{key['p50']:.0f} ms",
                "met": None if key is None else key["p50"] < GOAL_KEYFRAME_MS})
    return out


def run(device: str, *, seconds: float, fps: float, node_seconds: float,
        say=print) -> Dict[str, Any]:
    """Every measurement of the module docstring; returns the report as plain data."""
    report: Dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                              "machine": machine(device), "tables": {}, "notes": []}
    gpu = {"preset": "gpu", "threads": 0}
    started = time.monotonic()
    say(f"gpu_check: tracked frames with the GPU preset on {device} (deformation graph)")
    graph = frame_stages(seconds=seconds, fps=fps, device=device, overrides=gpu,
                         progress=lambda m: None)
    say("gpu_check: the same frames carried by the velocity field")
    field = frame_stages(seconds=seconds, fps=fps, device=device,
                         overrides={**gpu, "tracker.deformation.enabled": False},
                         progress=lambda m: None)
    tables = [("tracked frames, deformation graph (GPU preset)", graph),
              ("tracked frames, velocity field (GPU preset, tracker.deformation.enabled false)",
               field)]
    if node_seconds > 0:
        from bench_node import default_overrides, node_end_to_end

        from occflow_ros.model import shipped_model_path

        say(f"gpu_check: the node end to end, {node_seconds:g} s at 30 Hz")
        node = node_end_to_end(shipped_model_path(), seconds=node_seconds,
                               presets=[("GPU preset", default_overrides(device, 0))],
                               progress=lambda m: None)
        tables.append(("the node end to end (make demo's stream)", node))
    for title, table in tables:
        report["tables"][title] = {"rows": table.rows, "notes": table.notes,
                                   "markdown": table.markdown()}
    report["goals"] = goals(graph, field)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# GPU check ({report['command']})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()), ""]
    for title, table in report["tables"].items():
        lines += [f"## {title}", "", table["markdown"], ""]
    lines += ["## Goals", ""]
    for g in report["goals"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"- {g['goal']}: {g['measured']} — **{verdict}**")
    lines += ["", f"Run time {report['seconds']} s."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--out", type=Path, help="write gpu_check.md and gpu_check.json here")
    parser.add_argument("--seconds", type=float, default=4.0, help="scene length (default 4)")
    parser.add_argument("--node-seconds", type=float, default=10.0,
                        help="the node's stream (default 10; 0: no node run)")
    parser.add_argument("--quick", action="store_true",
                        help="a dry run on the CPU: 2.5 s scenes (past the 2 s keyframe window), "
                        "no node run")
    args = parser.parse_args(argv)
    if args.quick:
        args.device, args.seconds, args.node_seconds = "cpu", 2.5, 0.0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, "
              f"cuda available: False); run it on a GPU machine, or --quick for a CPU dry run",
              file=sys.stderr)
        return 2
    report = run(args.device, seconds=args.seconds, fps=6.0 if args.quick else 15.0,
                 node_seconds=args.node_seconds)
    text = markdown(report)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
