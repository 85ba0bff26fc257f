"""Reports of a scored sequence: a new directory with JSON, a Markdown summary and matplotlib plots."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .sequence import LENGTH_METRICS, EvaluationError

__all__ = ["new_directory", "report_markdown", "write_json", "write_plots"]


@contextlib.contextmanager
def new_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory that must not exist yet, all or nothing.

    Yields a hidden temporary sibling (``.<name>.partial-*``) to write into; leaving the block
    normally renames it to ``path``; an exception (KeyboardInterrupt included) removes it, so
    ``path`` only ever holds a complete report. Raises EvaluationError when ``path`` exists.
    """
    target = Path(path)
    if os.path.lexists(target):
        raise EvaluationError(f"output directory {target}: exists already; refusing to overwrite it "
                              "(choose another path or remove it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        if os.path.lexists(target):
            raise EvaluationError(f"output directory {target}: appeared while the report was written")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """JSON with numpy scalars and arrays as plain numbers and lists."""
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"not JSON: {type(value).__name__}")

    Path(path).write_text(json.dumps(data, indent=2, default=plain) + "\n", encoding="utf-8")


def _fmt(value: Any, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def report_markdown(title: str, result: Mapping[str, Any], *, paper: Mapping[str, float] | None = None,
                    paper_note: str = "", notes: Sequence[str] = (),
                    images: Mapping[str, str] | None = None) -> str:
    """The Markdown summary of :func:`~occflow_ros.evaluation.sequence.score_sequence`'s result.

    ``paper``: reference numbers per metric key (normalised units), shown in their own column,
    with ``paper_note`` saying how they were obtained. ``notes``: lines shown under the title
    (input, model, settings). ``images``: caption -> relative path of a plot or animation.
    """
    s = result["summary"]
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    frames_in = s["frames_in"] if s["frames_in"] is not None else "?"
    lines += [f"{frames_in} input frames over {s['duration_s']:.2f} s; {s['frames_tracked']} with a mesh, "
              f"{s['keyframe_segments']} keyframe segments; {s['frames_scored']} of {s['frames_with_truth']} "
              f"frames with ground truth scored ({s['truth_frames_without_mesh']} had no mesh yet).", ""]
    metrics = s["metrics"]
    if metrics:
        lines += [f"Lengths in the paper's normalised units (divided by the object's size, {100 * s['unit_m']:.1f} cm: "
                  "the longest side of its ground-truth bounding box at the first frame) and in centimetres. "
                  f"Chamfer-L1 uses {s['chamfer_points']} points sampled on each mesh. Lower is better, except IoU.",
                  ""]
        head = "| metric | mean | mean (cm) | after keyframes | last frame | max |"
        rule = "|---|---|---|---|---|---|"
        if paper:
            head += " paper |"
            rule += "---|"
        lines += [head, rule]
        names = {**LENGTH_METRICS, "iou": "IoU"}
        for key, name in names.items():
            m = metrics.get(key)
            if m is None:
                continue
            cm = metrics.get(f"{key}_cm", {}).get("mean") if key != "iou" else None
            cells = [_fmt(m["mean"]), _fmt(cm, 2) if key != "iou" else "", _fmt(m["mean_after_keyframe"]),
                     _fmt(m["last"]), _fmt(m["max"])]
            if paper:
                cells.append(_fmt(paper.get(key)) if key in paper else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        if paper and paper_note:
            lines += [paper_note, ""]
        if s["frames_scored"] > 1 and all(r["since_keyframe_s"] == 0 for r in result["frames"] if "corr_l2" in r):
            lines += ["Every scored frame is a keyframe (the tracker re-meshed each frame): correspondence L2 is "
                      "then only how far new vertices lie from the truth, not how well they were tracked "
                      "(occflow-eval bag --keyframes first tracks one keyframe to the end).", ""]
    elif s["frames_with_truth"]:
        lines += [f"Ground truth on {s['frames_with_truth']} frames, but no tracked mesh on any of them: nothing "
                  "to score (the replay's /diagnostics say why each frame was held).", ""]
    else:
        lines += ["No ground truth in the input bag (no /ground_truth/surface topic): timing and renders only.",
                  ""]
    drift = s["drift"]
    if drift:
        lines += ["## Drift: error against time since the keyframe", "",
                  "| seconds since keyframe | frames | correspondence L2 (cm) | Chamfer-L1 (cm) | IoU |",
                  "|---|---|---|---|---|"]
        for d in drift:
            lo, hi = d["since_keyframe_s"]
            lines.append(f"| {lo:.3f}-{hi:.3f} | {d['frames']} | {_fmt(d['corr_l2_cm'], 2)} | "
                         f"{_fmt(d['chamfer_l1_cm'], 2)} | {_fmt(d['iou'], 3)} |")
        lines.append("")
    t = s["processing_ms"]
    lines += ["## Processing time per frame", "",
              f"Mean {_fmt(t['mean'], 1, ' ms')}, p50 {_fmt(t['p50'], 1, ' ms')}, p95 {_fmt(t['p95'], 1, ' ms')}, "
              f"max {_fmt(t['max'], 1, ' ms')}; keyframes p50 {_fmt(t['keyframe_p50'], 1, ' ms')}, tracking "
              f"steps p50 {_fmt(t['tracking_p50'], 1, ' ms')} ({t['frames_with_problems']} frames held, rejected "
              "or failed). "
              "Wall-clock time of decoding, tracking and building the messages, measured by the replay on "
              "this machine.", ""]
    for caption, path in (images or {}).items():
        lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


def write_plots(directory: str | os.PathLike, result: Mapping[str, Any],
                statuses: Sequence[Mapping[str, Any]] = ()) -> dict[str, str]:
    """PNG plots into ``directory``; returns caption -> file name.

    error_vs_time.png: Chamfer-L1 and correspondence L2 (cm) and IoU against time, keyframes
    marked; error_vs_time_since_keyframe.png: the same lengths against seconds since the keyframe
    (drift); processing_time.png: a histogram of the per-frame processing time, keyframes apart.
    ``statuses``: per input frame ``{"processing_ms", "keyframe"}`` (default: the scored rows').
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    rows = result["frames"]
    scored = [r for r in rows if "corr_l2" in r]
    files: dict[str, str] = {}
    colours = {"chamfer_l1": "tab:blue", "corr_l2": "tab:red", "id_corr_l2": "tab:orange"}
    if scored:
        t = np.array([r["t_s"] for r in scored])
        has_iou = any("iou" in r for r in scored)
        fig, axes = plt.subplots(2 if has_iou else 1, 1, figsize=(8, 6 if has_iou else 3.8), sharex=True,
                                 squeeze=False)
        ax = axes[0, 0]
        for key, colour in colours.items():
            ax.plot(t, [r.get(f"{key}_cm", np.nan) for r in scored], ".-", color=colour, label=LENGTH_METRICS[key])
        for r in scored:
            if r["keyframe"]:
                for a in axes[:, 0]:
                    a.axvline(r["t_s"], color="0.7", lw=0.8, zorder=0)
        ax.set_ylabel("error (cm)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        if has_iou:
            axes[1, 0].plot(t, [r.get("iou", np.nan) for r in scored], ".-", color="tab:green")
            axes[1, 0].set_ylabel("IoU")
            axes[1, 0].grid(alpha=0.3)
        axes[-1, 0].set_xlabel("time since the first frame (s); grey: keyframes")
        fig.tight_layout()
        fig.savefig(out / "error_vs_time.png", dpi=100)
        plt.close(fig)
        files["error against time"] = "error_vs_time.png"

        fig, ax = plt.subplots(figsize=(8, 3.8))
        since = np.array([r["since_keyframe_s"] for r in scored])
        for key in ("chamfer_l1", "corr_l2"):
            ax.scatter(since, [r.get(f"{key}_cm", np.nan) for r in scored], s=10, color=colours[key], alpha=0.5,
                       label=LENGTH_METRICS[key])
        drift = result["summary"]["drift"]
        if drift:
            mids = [sum(d["since_keyframe_s"]) / 2 for d in drift]
            for key in ("chamfer_l1", "corr_l2"):
                ax.plot(mids, [d[f"{key}_cm"] if d[f"{key}_cm"] is not None else np.nan for d in drift], "-",
                        color=colours[key], lw=2)
        ax.set_xlabel("time since the keyframe (s)")
        ax.set_ylabel("error (cm)")
        ax.set_title("drift: dots per frame, lines bin means", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "error_vs_time_since_keyframe.png", dpi=100)
        plt.close(fig)
        files["error against time since the keyframe"] = "error_vs_time_since_keyframe.png"

    timing = list(statuses) or [{"processing_ms": r.get("processing_ms"), "keyframe": r["keyframe"]}
                                for r in rows]
    key_ms = [s["processing_ms"] for s in timing if s["keyframe"] and s["processing_ms"] is not None]
    step_ms = [s["processing_ms"] for s in timing if not s["keyframe"] and s["processing_ms"] is not None]
    if key_ms or step_ms:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        both = np.asarray(key_ms + step_ms)
        bins = np.linspace(0.0, float(both.max()) * 1.05 + 1e-6, 40)
        ax.hist([step_ms, key_ms], bins=bins, stacked=True, color=["tab:blue", "tab:orange"],
                label=[f"tracking steps ({len(step_ms)})", f"keyframes ({len(key_ms)})"])
        ax.set_xlabel("processing time per frame (ms)")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "processing_time.png", dpi=100)
        plt.close(fig)
        files["processing time per frame"] = "processing_time.png"
    return files
