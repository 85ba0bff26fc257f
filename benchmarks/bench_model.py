"""How fast the Occupancy Flow model is on this machine: velocity field, tracking step, keyframe meshing.

Run:  . tools/env.sh && python benchmarks/bench_model.py [--checkpoint PATH] [--device cpu|cuda]

Prints (no asserts; compare numbers within one run, the machine may be shared):
- velocity-field evaluations per second for 3k, 10k and 100k points (one batch, and 10k chunks);
- one tracking step: 3k vertices carried over 1/30 s of a 1 s window, per solver;
- a keyframe: MISE at final resolution 128 (coarse 32, two upsampling steps) with the number of
  decoder queries against a dense 129^3 grid, marching cubes, and simplification to 3k vertices.
The keyframe uses the shipped (or given) trained model on a simulated depth frame of a human, so
the surface it meshes is a real one; timings of the networks do not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def human_frame(seed: int = 0) -> np.ndarray:
    """Object points (N, 3) of a simulated 640x480 depth frame of a human, optical frame, metres."""
    from occflow_ros.data import (LABEL_OBJECT, DepthCamera, SensorConfig, random_shape,
                                  realsense_d435, view_of)

    rng = np.random.default_rng(seed)
    shape = random_shape(rng, ["human"])
    camera = DepthCamera(realsense_d435(), view_of(shape, 2.5, 0.4), SensorConfig())
    render = camera.render_full(shape, 0.3, rng)
    return render.cloud[render.labels == LABEL_OBJECT]


def main() -> None:
    from occflow_ros.model import (FramePoses, ModelConfig, OccupancyFlow, SolverConfig,
                                   load_checkpoint, select_device, shipped_model_path)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="trained model (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)

    checkpoint = None
    path = args.checkpoint
    if path is None:
        path = shipped_model_path()
    try:
        checkpoint = load_checkpoint(path, map_location=device)
        model = checkpoint.model
        source = str(path)
    except Exception as e:  # noqa: BLE001 - report and go on with an untrained model of the same size
        model = OccupancyFlow(ModelConfig()).to(device).eval()
        source = f"untrained default-size model ({e})"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {source}; {model.parameter_count() / 1e6:.2f} M parameters; "
          f"config {model.config.to_dict()}")

    code = torch.randn(1, model.config.c_dim, device=device)
    cond = model.velocity.condition(code)
    print("\nvelocity field v(p, t | c):")
    with torch.inference_mode():
        for n in (3_000, 10_000, 100_000):
            pts = torch.rand(1, n, 3, device=device) - 0.5
            med, _ = timed(lambda: model.velocity(pts, 0.5, cond=cond), args.repeats)
            line = f"  {n:>7} points, one batch: {med * 1e3:8.2f} ms/eval = {n / med / 1e6:6.2f} Mpts/s"
            if n > 10_000:
                def chunked():
                    for i in range(0, n, 10_000):
                        model.velocity(pts[:, i:i + 10_000], 0.5, cond=cond)
                cmed, _ = timed(chunked, max(2, args.repeats // 3))
                line += f" | 10k chunks: {cmed * 1e3:8.2f} ms = {n / cmed / 1e6:6.2f} Mpts/s"
            print(line)

    print("\ntracking step: 3k vertices over 1/30 s (t 0.5 -> 0.5333 of a 1 s window):")
    verts = torch.rand(1, 3000, 3, device=device) - 0.5
    poses = None
    if model.rigid:  # the step's two frames, the second turned and moved a little
        turn = torch.eye(4).repeat(1, 2, 1, 1)
        turn[0, 1, :3, :3] = torch.tensor([[0.999, -0.0447, 0.0], [0.0447, 0.999, 0.0],
                                           [0.0, 0.0, 1.0]])
        turn[0, 1, :3, 3] = 0.01
        poses = FramePoses(torch.tensor([[0.5, 0.5 + 1 / 30]], device=device), turn.to(device))
    solvers = [SolverConfig("euler", 0.1), SolverConfig("midpoint", 0.1), SolverConfig("rk4", 0.1),
               SolverConfig("dopri5", rtol=1e-3, atol=1e-5)]
    with torch.inference_mode():
        for solver in solvers:
            stats: dict = {}
            model.flow(verts, 0.5, 0.5 + 1 / 30, code, solver, stats=stats, poses=poses)
            med, worst = timed(lambda: model.flow(verts, 0.5, 0.5 + 1 / 30, code, solver,
                                                  poses=poses), args.repeats)
            print(f"  {solver.method:>8}: {med * 1e3:7.2f} ms (max {worst * 1e3:.2f}), "
                  f"{stats['evaluations']} evaluations")
        frame = torch.rand(1, 1, model.config.input_points, 3, device=device) - 0.5
        _, state = model.encode_motion(frame, torch.zeros(1, 1, device=device))
        med, _ = timed(lambda: model.encode_motion(frame, torch.full((1, 1), 0.5, device=device),
                                                   state=state), args.repeats)
        print(f"  motion-code update for one new frame ({model.config.input_points} points): "
              f"{med * 1e3:.2f} ms")

    from occflow_ros.geometry import extract_mesh, fit_normalization, marching_cubes, simplify_mesh

    print("\nkeyframe: MISE 32 -> 128 (two upsampling steps), marching cubes, simplification:")
    points = human_frame()
    margin = checkpoint.normalization.get("margin", 0.15) if checkpoint else 0.15
    norm = fit_normalization(points, padding=margin)
    rng = np.random.default_rng(0)
    x = norm.to_normalized(points[rng.choice(len(points), model.config.input_points)])
    x = torch.from_numpy(x.astype(np.float32)).to(device)[None]
    with torch.inference_mode():
        t0 = time.perf_counter()
        c_s = model.encode_shape(x)
        dec_cond = model.decoder.condition(c_s)
        t_enc = time.perf_counter() - t0

        def field(p: np.ndarray) -> np.ndarray:
            q = torch.from_numpy(p).to(device)[None]
            return model.decoder(q, cond=dec_cond, context=x)[0].cpu().numpy()

        t0 = time.perf_counter()
        result = extract_mesh(field, threshold=0.0, resolution0=32, upsampling_steps=2,
                              max_batch=10_000)
        t_mise = time.perf_counter() - t0
    grid = np.zeros((129, 129, 129))
    grid[40:90, 40:90, 40:90] = 1.0
    t_mc, _ = timed(lambda: marching_cubes(grid, 0.5), 3)
    v, f = result.vertices, result.faces
    t0 = time.perf_counter()
    if len(f):
        vs, _ = simplify_mesh(v, f, target_vertices=3000)
    else:
        vs = v
    t_simp = time.perf_counter() - t0
    print(f"  shape code: {t_enc * 1e3:.1f} ms")
    print(f"  MISE: {t_mise * 1e3:.0f} ms, {result.n_queries} decoder queries vs "
          f"{result.dense_queries} dense ({100 * result.query_ratio:.1f}%), "
          f"{len(v)} vertices / {len(f)} faces")
    print(f"  marching cubes alone on a 129^3 grid: {t_mc * 1e3:.0f} ms")
    print(f"  simplify to 3k vertices: {t_simp * 1e3:.0f} ms -> {len(vs)} vertices")
    print(f"  keyframe total: {(t_enc + t_mise + t_simp) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
