"""Console entry points (thin): each parses arguments and calls one function of a room."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
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
    return _standalone('train', argv)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--init-from", help="fine-tune: start from this checkpoint's weights (e.g. "
                        "the shipped model) with a fresh optimizer and schedule")
    parser.add_argument("--resume", action="store_true", help="continue from out_dir/last.pt")
    parser.add_argument("--no-progress", action="store_true")


def _train_run(args: argparse.Namespace) -> int:
    from .model import ModelError
    from .training import TrainConfig, TrainError, train
    settings = _load_yaml(args.config) if args.config else {}
    for key in ("train_data", "val_data", "out_dir", "steps", "batch_size", "lr", "seed",
                "val_every", "device", "init_from"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    try:
        cfg = TrainConfig.from_dict(settings)
        command = " ".join(shlex.quote(a) for a in ["occflow-train", *args.argv])
        summary = train(cfg, resume=args.resume, progress=not args.no_progress, command=command)
    except (TrainError, ModelError, ValueError) as e:
        print(f"occflow-train: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0

def make_dataset_main(argv: Sequence[str] | None = None) -> int:
    """occflow-make-dataset: write synthetic window shards (simulated depth camera + exact truth)."""
    return _standalone('make-dataset', argv)


def _make_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--per-shard", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--families", nargs="+", help="shape families (default: all, mostly human)")
    parser.add_argument("--amplitude", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="motion amplitude range (training: 0.5 1.0; unseen: 1.0 1.2)")
    parser.add_argument("--width", type=int, default=320, help="simulated camera width (pixels)")
    parser.add_argument("--height", type=int, default=240, help="simulated camera height (pixels)")
    parser.add_argument("--frame-points", type=int, default=1024,
                        help="points stored per frame at most (shape training: 4096)")
    parser.add_argument("--window-seconds", type=float, default=1.0,
                        help="length of each window (shape training needs only the keyframe: 0.1)")
    parser.add_argument("--gt-frames", type=int, default=4,
                        help="ground-truth times per window (occupancy and correspondences)")
    parser.add_argument("--no-progress", action="store_true")


def _make_dataset_run(args: argparse.Namespace) -> int:
    from .data import DataError, MotionRanges
    from .data.synthetic import SyntheticConfig, write_synthetic_shards
    try:
        kwargs = {"width": args.width, "height": args.height, "frame_points": args.frame_points,
                  "window_seconds": args.window_seconds, "gt_frames": args.gt_frames}
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

PAPER_DFAUST = {"chamfer_l1": 0.065, "corr_l2": 0.094}  # OFlow on D-FAUST (ICCV 2019, Table 2)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def eval_markdown(title: str, summary: dict, *, paper: dict | None = None) -> str:
    """A Markdown table of an evaluation summary (occflow_ros.evaluation.summarize)."""
    lines = [f"## {title}", "",
             f"{summary['windows']} windows ({summary['failed']} failed); mean window length "
             f"{_fmt(summary['window_seconds_mean'])} s. Lengths in units of the object's size "
             "(ground-truth bounding box, longest side = 1, as D-FAUST's normalisation).", "",
             "| metric | keyframe | window end | mean over later frames |"
             + (" paper (OFlow, D-FAUST) |" if paper else ""),
             "|---|---|---|---|" + ("---|" if paper else "")]
    names = {"iou": "IoU", "static_iou": "IoU, static baseline (keyframe mesh left still)",
             "chamfer_l1": "Chamfer-L1", "static_chamfer_l1": "Chamfer-L1, static baseline",
             "corr_l2": "correspondence L2",
             "static_corr_l2": "correspondence L2, static baseline",
             "nn_corr_l2": "correspondence L2, nearest-neighbour baseline"}
    for key, name in names.items():
        row = summary.get(key)
        if row is None:
            continue
        if all(v is None for v in row.values()):
            continue
        cells = [_fmt(row["keyframe"]), _fmt(row["end"]), _fmt(row["mean_later"])]
        if paper:
            cells.append(_fmt(paper.get(key)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary.get("iou_queries"):
        lines += ["", f"IoU from {summary['iou_queries']} uniform queries per frame in the meshing cube."]
    groups = summary.get("by_motion") or {}
    if len(groups) > 1:
        lines += ["", "At the window's end, by kind of motion:", "",
                  "| motion | windows | IoU | IoU static | corr. L2 | corr. L2 static | corr. L2 NN |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in groups.items():
            cells = [_fmt(row.get(k)) for k in ("iou", "static_iou", "corr_l2", "static_corr_l2",
                                                 "nn_corr_l2")]
            lines.append(f"| {name} | {row['windows']} | " + " | ".join(cells) + " |")
    steps = summary["tracking_step_ms"]
    lines += ["", f"Tracking step p50 {_fmt(steps['p50'])} ms, p95 {_fmt(steps['p95'])} ms; "
                  f"keyframe p50 {_fmt(summary['keyframe_ms']['p50'])} ms."]
    return "\n".join(lines) + "\n"


def eval_main(argv: Sequence[str] | None = None) -> int:
    """occflow-eval: score a trained model on held-out synthetic windows, a D-FAUST sequence, window
    records, or a bag with ground truth (occflow-eval bag <input-bag> [--replayed <output-bag>])."""
    return _standalone("eval", argv)


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per source; the options every source takes, then each source's own."""
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    sources = {
        "synthetic": sub.add_parser("synthetic", help="held-out windows of the synthetic world"),
        "dfaust": sub.add_parser("dfaust", help="D-FAUST sequence folder(s), seen by a simulated "
                                 "single-view camera from several azimuths"),
        "records": sub.add_parser("records", help="window shards (occflow-make-dataset's)"),
        "bag": sub.add_parser("bag", help="a bag with ground truth (occflow-make-bag's): replay it "
                              "through the tracker, or score a replay of it"),
    }
    for name, p in sources.items():
        p.add_argument("--checkpoint", help="model file (default: the shipped model)")
        p.add_argument("--device", default="cpu")
        p.add_argument("--threads", type=int, default=1, help="torch and BLAS CPU threads "
                       "(default 1, as on the node's CPU preset; 0: the libraries' own default)")
        p.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE",
                       help="override a node parameter (bag), a tracker.* parameter (the others), "
                       "e.g. -p tracker.deformation.rigidity:=3")
        p.add_argument("--no-progress", action="store_true")
        if name != "bag":
            p.add_argument("--flow", action="store_true",
                           help="carry the keyframe mesh by the velocity field alone "
                           "(tracker.deformation.enabled:=false) instead of the default non-rigid "
                           "registration")
            p.add_argument("--out", help="write summary.json, windows.json and summary.md here")
            p.add_argument("--seed", type=int, default=1001,
                           help="seed of the held-out windows (training used 1 and 2)")
    syn = sources["synthetic"]
    syn.add_argument("--windows", type=int, default=32, help="number of windows")
    syn.add_argument("--amplitude", nargs=2, type=float, default=(1.0, 1.2),
                     help="motion amplitude range (training drew 0.5..1.0)")
    syn.add_argument("--iou-points", type=int, default=100_000,
                     help="uniform occupancy queries per ground-truth frame for IoU, labelled exactly "
                     "(the paper: 100000; 0: the records' own 2048)")
    syn.add_argument("--width", type=int, default=320)
    syn.add_argument("--height", type=int, default=240)
    for name in ("synthetic", "dfaust"):
        sources[name].add_argument(
            "--frame-points", type=int, default=4096,
            help="points kept per frame at most (a person seen at 320x240 gives 1-4k; the node "
            "gives its keyframes thousands). Until 2026-12-03 this was 1024, so the windows differ "
            "from reports made before")
    sources["dfaust"].add_argument("paths", nargs="+", help="sequence folder(s)")
    sources["dfaust"].add_argument("--views", type=int, default=4, help="camera azimuths")
    sources["records"].add_argument("paths", nargs="+", help="shard files or directories")
    bag = sources["bag"]
    bag.add_argument("paths", nargs=1, metavar="input_bag", help="the input bag (depth clouds and "
                     "/ground_truth/* topics, e.g. from occflow-make-bag)")
    bag.add_argument("--out", help="the report directory to create (default out/eval/<bag>-<time>)")
    bag.add_argument("--replayed", help="score this replayed bag (occflow-replay's output of the input "
                     "bag) instead of replaying the input bag into <out>/replay")
    bag.add_argument("--params-file", help="the node's parameters YAML for the replay (e.g. "
                     "config/reconstruct.yaml)")
    bag.add_argument("--topic", help="the depth topic (default: the only PointCloud2 outside "
                     "/ground_truth/)")
    bag.add_argument("--chamfer-points", type=int, default=100_000,
                     help="points sampled on each mesh for Chamfer-L1 (the paper: 100000)")
    bag.add_argument("--render-frames", type=int, default=24, help="frames in the GIF (0: no renders)")
    bag.add_argument("--keyframes", choices=["node", "first"], default="node",
                     help="the node's keyframe policy from the parameters (default), or 'first': one "
                     "keyframe at the first frame carried to the end (the paper's protocol)")


def _eval_run(args: argparse.Namespace) -> int:
    if args.source == "bag":
        return _eval_bag(args)
    import numpy as np

    from .data import DataError, MotionRanges
    from .data.dfaust import dfaust_window_record, load_dfaust_sequence
    from .data.records import load_records
    from .data.synthetic import SyntheticConfig, synthetic_records, with_iou_queries
    from .evaluation.evaluate import evaluate_records, summarize
    from .model import ModelError, load_checkpoint, shipped_model_path
    from .model import limit_cpu_threads

    if args.threads:
        limit_cpu_threads(args.threads)
    try:
        checkpoint = load_checkpoint(args.checkpoint or shipped_model_path(),
                                     map_location=args.device)
        rng = np.random.default_rng(args.seed)
        paper = None
        if args.source == "synthetic":
            if args.seed in (1, 2):
                raise DataError(f"seed {args.seed} generated training/validation data; "
                                "held-out means another seed")
            # dense correspondences: the paper's vertex-to-truth matching and Chamfer's accuracy
            # term need them (sparse truth adds its own spacing to both errors)
            cfg = SyntheticConfig(ranges=MotionRanges(amplitude=tuple(args.amplitude)),
                                  width=args.width, height=args.height, corr_points=20_000,
                                  frame_points=args.frame_points)
            records = list(synthetic_records(args.seed, args.windows, cfg))
            if args.iou_points:
                # the records' own 2048 uniform queries leave ~10 inside a person: too few for IoU
                records = [with_iou_queries(r, args.iou_points, [args.seed, i], cfg)
                           for i, r in enumerate(records)]
            title = (f"Held-out synthetic windows (seed {args.seed}, amplitude "
                     f"{args.amplitude[0]}..{args.amplitude[1]})")
        elif args.source == "dfaust":
            records = []
            for path in args.paths:
                seq = load_dfaust_sequence(path)
                for azimuth in np.linspace(0, 2 * np.pi, args.views, endpoint=False):
                    records.append(dfaust_window_record(seq, rng, azimuth=float(azimuth),
                                                        corr_points=seq.points.shape[1],
                                                        frame_points=args.frame_points))
            title = f"D-FAUST {', '.join(p.rstrip('/').split('/')[-1] for p in args.paths)}, " \
                    f"simulated single view ({args.views} azimuths)"
            paper = PAPER_DFAUST
        else:
            records = load_records(args.paths)
            title = f"Records {' '.join(args.paths)}"
        tracker_config = None
        params = _param_overrides(args.param)
        if args.flow:
            params["tracker.deformation.enabled"] = False
        if params:
            from .ros.node_config import tracker_config_from_parameters

            other = sorted(k for k in params if not k.startswith("tracker."))
            if other:
                raise DataError(f"{args.source}: -p takes tracker.* parameters here, got {other}")
            tracker_config = tracker_config_from_parameters(params)
            if not tracker_config.deformation.enabled:
                title += "; mesh carried by the velocity field alone"
            title += "; " + " ".join(f"{k}:={v}" for k, v in sorted(params.items()))
        windows = evaluate_records(checkpoint, records, tracker_config=tracker_config,
                                   device=args.device, seed=args.seed, progress=not args.no_progress)
    except (DataError, ModelError, ValueError) as e:
        print(f"occflow-eval: error: {e}", file=sys.stderr)
        return 2
    summary = summarize(windows)
    summary["checkpoint"] = str(checkpoint.path)
    summary["tracker_parameters"] = params
    text = eval_markdown(title, summary, paper=paper)
    print(text)
    if args.out:
        out = Path(args.out)
        files = {"summary.json": json.dumps(summary, indent=2, default=str),
                 "windows.json": json.dumps(windows, indent=2, default=str), "summary.md": text}
        existing = [str(out / name) for name in files if (out / name).exists()]
        if existing:
            print(f"occflow-eval: {', '.join(existing)} exist; nothing overwritten", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (out / name).write_text(content)
    return 0


PAPER_NOTE = (
    "Paper: Occupancy Flow on D-FAUST (Niemeyer et al., ICCV 2019, Table 2): its input is 300 points "
    "sampled from the FULL surface of each frame (all sides, no noise) of 17-frame test sequences. Ours: "
    "one simulated depth view (only the side facing the camera, with depth noise), the whole node pipeline "
    "(filtering, keyframe meshing, tracking) with the node's parameters -- a different and harder input, so "
    "the columns are not a like-for-like comparison.")


def _eval_bag(args: argparse.Namespace) -> int:
    """occflow-eval bag: replay (or read the replay of) a bag and write its report directory."""
    import os
    import signal
    import time

    from .evaluation.sequence import EvaluationError
    from .model import ModelError
    from .apps.bag_eval import FIRST_KEYFRAME_ONLY, evaluate_bag
    from .ros.errors import MessageError
    from .ros.node_config import NodeConfigError
    from .apps.replay import load_replay_config, make_tracker

    input_bag = args.paths[0]
    out = args.out or os.path.join(
        "out", "eval", f"{Path(input_bag.rstrip('/')).name}-{time.strftime('%Y%m%d-%H%M%S')}")

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)  # SIGTERM cleans up like Ctrl-C
    try:
        config = make = None
        notes = []
        if args.replayed is None:
            overrides = {"device": args.device, **_param_overrides(args.param)}
            if args.keyframes == "first":
                overrides.update(FIRST_KEYFRAME_ONLY)
            config = load_replay_config(args.params_file, model=args.checkpoint, overrides=overrides)
            notes.append(f"model: `{config.model_path}`; parameters: `{args.params_file or 'defaults'}`"
                         + (f" with {' '.join(args.param)}" if args.param else ""))
            notes.append("keyframes: " + ("the first frame only, its mesh carried to the end (the paper's "
                                          "protocol)" if args.keyframes == "first" else
                                          "the node's policy (window, max_frames, residual threshold)"))

            def make():
                return make_tracker(config, threads=args.threads)

        evaluate_bag(input_bag, out, replayed=args.replayed, make_tracker=make, config=config,
                     topic=args.topic, chamfer_points=args.chamfer_points,
                     render_frames=args.render_frames, notes=notes, progress=not args.no_progress,
                     paper_for={"dfaust": PAPER_DFAUST}, paper_note=PAPER_NOTE,
                     log=lambda line: print(f"occflow-eval: {line}", file=sys.stderr))
    except KeyboardInterrupt:
        print("occflow-eval: interrupted; nothing written", file=sys.stderr)
        return 130
    except (MessageError, NodeConfigError, ModelError, EvaluationError, ValueError, OSError) as e:
        print(f"occflow-eval: error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    print((Path(out) / "report.md").read_text())
    print(f"report: {out}")
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _param_overrides(items: Sequence[str] | None) -> dict:
    """``-p name:=value`` items as {name: YAML-parsed value}, as ros2 reads them."""
    from .ros.params_file import parse_parameter_value

    out = {}
    for item in items or ():
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"-p takes name:=value, got {item!r}")
        out[name] = parse_parameter_value(value)
    return out


class _StopFlag:
    """SIGINT/SIGTERM turned into a flag while a long loop runs (previous handlers restored on exit)."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> "_StopFlag":
        import signal

        def handler(signum, _frame) -> None:
            self.signum = signum

        self._previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for s, previous in self._previous.items():
            signal.signal(s, previous)


def replay_main(argv: Sequence[str] | None = None) -> int:
    """occflow-replay (ros2 run occflow_ros replay): run the tracker over a recorded bag and write the
    node's topics to a new bag (see occflow_ros.apps.replay). Exit status: 0 done, 2 an error (one line
    naming the bag, file or parameter), 128 + signal number when SIGINT/SIGTERM ended it early (the
    output bag is then complete and holds the frames replayed so far)."""
    return _standalone('replay', argv)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="input bag (directory, .mcap or .db3)")
    parser.add_argument("output", help="output bag directory to create (never overwritten)")
    parser.add_argument("--topic", help="PointCloud2 input topic (default: the only one outside /ground_truth/)")
    parser.add_argument("--params-file", help="the node's parameters YAML, e.g. config/reconstruct.yaml "
                        "(default: every parameter's default)")
    parser.add_argument("--model", help="checkpoint (default: the params file's model_path, else the "
                        "shipped model)")
    parser.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE",
                        help="override one node parameter, as ros2 run's -p (repeatable)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the parameter 'threads', "
                        "or 1 when it is 0)")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--namespace", default="", help="the node namespace in the output topics")
    parser.add_argument("--no-progress", action="store_true")


def _replay_run(args: argparse.Namespace) -> int:
    from .model import ModelError
    from .ros.errors import MessageError
    from .ros.node_config import NodeConfigError
    from .apps.replay import check_replay_paths, load_replay_config, make_tracker, replay_bag

    try:
        config = load_replay_config(args.params_file, model=args.model,
                                    overrides=_param_overrides(args.param))
        check_replay_paths(args.input, args.output, args.topic)  # bad bags fail before the model loads
        tracker = make_tracker(config, threads=args.threads)
        with _StopFlag() as stop:
            result = replay_bag(args.input, args.output, tracker, config, topic=args.topic,
                                storage=args.storage, namespace=args.namespace,
                                progress=not args.no_progress, should_stop=stop,
                                log=lambda line: print(f"occflow-replay: {line}", file=sys.stderr))
    except (MessageError, NodeConfigError, ModelError, ValueError, OSError) as e:
        print(f"occflow-replay: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(result.summary())
    return 128 + stop.signum if result.interrupted else 0

def demo_main(argv: Sequence[str] | None = None) -> int:
    """occflow-demo (make demo): a simulated 640x480 RealSense stream of a moving person through the
    live reconstruct node over DDS; writes a report (rates, latency, tracking error against ground
    truth, vertex-id persistence, pictures) into a new out/demo-YYYYmmdd-HHMMSS/. Exit status: 0 done,
    1 the run failed (node did not start, died, published nothing, exited uncleanly), 2 bad arguments
    or no model."""
    return _standalone('demo', argv)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint the node loads (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length (default 20)")
    parser.add_argument("--motion", default="jumping_jacks", help="the person's motion (default "
                        "jumping_jacks; also arm_waves, hopping, punching, running_on_spot, ...)")
    parser.add_argument("--seed", type=int, default=7, help="the person and the sensor noise")
    parser.add_argument("--out-root", default="out", help="reports go to a new <out-root>/demo-<time>/")
    parser.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE",
                        help="override one node parameter on top of the demo's (repeatable)")
    parser.add_argument("--pictures", type=int, default=3, help="frames to render (0: none)")
    parser.add_argument("--no-bag", action="store_true", help="do not record the outputs into a bag")
    parser.add_argument("--input", choices=("points", "depth"), default="points",
                        help="send the node organized PointCloud2 (points, the default) or 16UC1 "
                        "depth images with their camera info (depth: the node's input.type depth)")
    parser.add_argument("--params-file", help="the node's parameters file (default: the package's "
                        "config/reconstruct.yaml, from the checkout or the installed share/)")


def _demo_run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # this process only renders and scores
    from .data.demo_scene import DemoSceneError, SceneConfig
    from .apps.demo import MODEL_HINT, DemoConfig, DemoError, run_demo

    try:
        kwargs = {"model": Path(args.model)} if args.model else {}
        if args.params_file:
            kwargs["params_file"] = Path(args.params_file)
        config = DemoConfig(scene=SceneConfig(seed=args.seed, motion=args.motion, seconds=args.seconds),
                            out_root=Path(args.out_root), parameters=_param_overrides(args.param),
                            pictures=args.pictures, bag=not args.no_bag, input=args.input,
                            **kwargs)
        if not Path(config.model).is_file():
            raise DemoError(f"no model at {config.model}: {MODEL_HINT}")
    except (DemoError, DemoSceneError, ValueError) as e:
        print(f"occflow-demo: error: {_one_line(e)}", file=sys.stderr)
        return 2
    try:
        result = run_demo(config, say=lambda line: print(line, flush=True))
    except DemoError as e:
        print(f"occflow-demo: FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("occflow-demo: interrupted (the node was stopped)", file=sys.stderr)
        return 130
    print()
    print(result.text)
    print(f"\nreport: {result.out_dir / 'report.md'}")
    if not result.ok:
        print("occflow-demo: FAILED: the node processed no frame or vertex ids changed within a "
              "keyframe segment (see the report)", file=sys.stderr)
        return 1
    return 0

def make_bag_main(argv: Sequence[str] | None = None) -> int:
    """occflow-make-bag: write a rosbag2 bag of a depth stream with ground truth (layout:
    occflow_ros.apps.ground_truth_bag), from the synthetic world or a D-FAUST sequence."""
    return _standalone('make-bag', argv)


def _make_bag_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", required=True)
    syn = sub.add_parser("synthetic", help="a deforming shape of the synthetic world")
    syn.add_argument("output", help="bag directory to create (never overwritten)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--family", help="human, bending_bar, twisting_box or breathing_blob (default: random)")
    syn.add_argument("--motion", help="a human motion (default: random)")
    syn.add_argument("--duration", type=float, default=2.0, help="seconds")
    syn.add_argument("--fps", type=float, default=30.0)
    syn.add_argument("--width", type=int, default=320, help="camera width in pixels (640 at most useful)")
    syn.add_argument("--height", type=int, default=240)
    syn.add_argument("--distance", type=float, default=2.5, help="camera distance (m)")
    syn.add_argument("--azimuth", type=float, default=0.0, help="camera azimuth (rad; 0: facing a human)")
    syn.add_argument("--background", choices=["none", "floor", "room"], default="floor",
                     help="floor (default; the node's remove_plane takes it away), room (floor and back "
                     "wall: set an ROI), none (the object alone)")
    syn.add_argument("--segment", action="store_true", help="NaN on every pixel that is not the object")
    syn.add_argument("--surface-points", type=int, default=20_000)
    syn.add_argument("--occupancy-points", type=int, default=10_000)
    df = sub.add_parser("dfaust", help="a D-FAUST sequence folder seen by a simulated single-view camera")
    df.add_argument("sequence", help="sequence folder (npz frames, e.g. ../shared/data/dfaust/50002_...)")
    df.add_argument("output", help="bag directory to create (never overwritten)")
    df.add_argument("--seed", type=int, default=0, help="depth noise")
    df.add_argument("--distance", type=float, default=2.5)
    df.add_argument("--azimuth", type=float, default=0.0)
    df.add_argument("--eye-height", type=float, default=0.4)
    df.add_argument("--noise-k", type=float, default=0.0015, help="depth noise sigma = k z^2 (m)")
    df.add_argument("--surface-points", type=int, default=0, help="truth points per frame (0: all rows)")
    for p in (syn, df):
        p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
        p.add_argument("--no-progress", action="store_true")


def _make_bag_run(args: argparse.Namespace) -> int:
    from .data import DataError
    from .data.ground_truth import dfaust_ground_truth, synthetic_ground_truth
    from .ros.errors import MessageError
    from .apps.ground_truth_bag import write_ground_truth_bag

    try:
        if args.source == "synthetic":
            info, frames = synthetic_ground_truth(
                args.seed, family=args.family, motion=args.motion, duration=args.duration, fps=args.fps,
                width=args.width, height=args.height, distance=args.distance, azimuth=args.azimuth,
                background=args.background, segment=args.segment, surface_points=args.surface_points,
                occupancy_points=args.occupancy_points)
            total = int(args.duration * args.fps + 1e-9) + 1
        else:
            from .data.dfaust import load_dfaust_sequence

            seq = load_dfaust_sequence(args.sequence)
            info, frames = dfaust_ground_truth(seq, seed=args.seed, distance=args.distance, azimuth=args.azimuth,
                                               eye_height=args.eye_height, noise_k=args.noise_k,
                                               surface_points=args.surface_points)
            total = seq.frames
        count = write_ground_truth_bag(args.output, info, frames, storage=args.storage,
                                       progress=not args.no_progress, total=total)
    except KeyboardInterrupt:
        print("occflow-make-bag: interrupted; nothing written", file=sys.stderr)
        return 130
    except (DataError, MessageError, ValueError, OSError) as e:
        print(f"occflow-make-bag: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(f"{count} frames -> {args.output}")
    return 0

_PARSERS = {
    'eval': dict(prog="occflow-eval", description=eval_main.__doc__),
    'train': dict(
        prog="occflow-train",
        description="Train Occupancy Flow on window shards. Multi-GPU: torchrun --nproc_per_node N "
                    "$(which occflow-train) ..."),
    'make-dataset': dict(
        prog="occflow-make-dataset",
        description="Write shards of synthetic windows: depth frames of deforming shapes with exact "
                    "occupancy and correspondences. Shard i is drawn from (seed, i); existing shard "
                    "files are kept, so an interrupted run continues."),
    'replay': dict(
        prog="occflow-replay", description="Replay a rosbag2 bag (mcap or sqlite3) of depth clouds through "
        "the tracker and write the reconstruct node's topics (plus the input) to a new bag for "
        "`ros2 bag play` + RViz. Deterministic: same bag, model and parameters, same bytes."),
    'demo': dict(prog="occflow-demo", description=demo_main.__doc__),
    'make-bag': dict(
        prog="occflow-make-bag", description="Write a bag of a simulated depth camera's clouds "
        "(/camera/depth/points) with ground truth: /ground_truth/surface (x y z id: the same ids every "
        "frame, i.e. correspondences), /ground_truth/occupancy (x y z inside), /ground_truth/info (JSON). "
        "Replay it with occflow-replay, score it with occflow-eval bag."),
}
_HELP = {
    "train": "train Occupancy Flow on window shards",
    "make-dataset": "write shards of synthetic windows with exact truth",
    "eval": "score a model on held-out synthetic windows, D-FAUST, window records or a bag",
    "replay": "replay a bag of depth clouds through the tracker into a new bag",
    "make-bag": "write a bag of a simulated depth stream with ground truth",
    "demo": "a simulated RealSense stream of a person through the live node, scored",
}
_COMMANDS = {
    "train": (_train_arguments, _train_run),
    "make-dataset": (_make_dataset_arguments, _make_dataset_run),
    "eval": (_eval_arguments, _eval_run),
    "replay": (_replay_arguments, _replay_run),
    "make-bag": (_make_bag_arguments, _make_bag_run),
    "demo": (_demo_arguments, _demo_run),
}


def _standalone(name: str, argv: Sequence[str] | None) -> int:
    """One console command (occflow-<name>): its own parser, then its run."""
    arguments, run = _COMMANDS[name]
    parser = argparse.ArgumentParser(**_PARSERS[name])
    arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m occflow_ros.cli <command> ...: every console command under one name (argparse
    sub-commands built by the same functions as the occflow-* commands)."""
    parser = argparse.ArgumentParser(prog="python -m occflow_ros.cli",
                                     description="The occflow-* console commands under one name.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (arguments, run) in _COMMANDS.items():
        command = sub.add_parser(name, help=_HELP[name], description=_PARSERS[name]["description"])
        arguments(command)
        command.set_defaults(run=run)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
