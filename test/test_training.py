"""Records, window sampling and the trainer: learning, determinism, resume, refusal, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from occflow_ros.data.errors import DataError
from occflow_ros.data.records import WindowRecord, load_records, save_shard
from occflow_ros.data.windows import WindowDataset, WindowSampling, collate_windows
from occflow_ros.model import ModelConfig, OccupancyFlow, SolverConfig, load_checkpoint
from occflow_ros.training import Objective, TrainConfig, TrainError, train
from sphere_records import sphere_record

TINY = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=32, velocity_hidden=16,
                   encoder_blocks=1, decoder_blocks=2, velocity_blocks=1, input_points=64)
SAMPLING = WindowSampling(input_points=64, min_frames=2, max_frames=6, occ_points=128,
                          corr_points=64)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    save_shard(root / "train" / "000.npz", [sphere_record(rng) for _ in range(12)])
    save_shard(root / "val" / "000.npz", [sphere_record(rng) for _ in range(4)])
    return root


def config(shards, out, **overrides) -> TrainConfig:
    settings = dict(train_data=[str(shards / "train")], val_data=[str(shards / "val")],
                    out_dir=str(out), steps=4, batch_size=2, val_every=2, log_every=1,
                    warmup_steps=1, model=TINY, sampling=SAMPLING, device="cpu",
                    solver=SolverConfig("rk4", step_size=0.5))
    settings.update(overrides)
    return TrainConfig(**settings)


def test_shard_round_trip_keeps_every_array(tmp_path):
    rng = np.random.default_rng(1)
    records = [sphere_record(rng, frames=f) for f in (3, 5)]
    records[1].frame_points[1] = np.zeros((0, 3), np.float32)  # an empty frame survives too
    path = save_shard(tmp_path / "s.npz", records)
    back = load_records([tmp_path])
    for a, b in zip(records, back):
        assert np.array_equal(a.frame_times, b.frame_times)
        assert all(np.array_equal(p, q) for p, q in zip(a.frame_points, b.frame_points))
        assert np.array_equal(a.gt_frames, b.gt_frames)
        assert np.array_equal(a.occ, b.occ) and np.array_equal(a.corr, b.corr)
        assert a.meta == b.meta
    with pytest.raises(DataError, match="refusing to overwrite"):
        save_shard(path, records)


def test_bad_records_and_shards_are_refused(tmp_path):
    with pytest.raises(DataError, match="start at 0"):
        WindowRecord([0.1, 0.2], [np.zeros((1, 3))] * 2, [0])
    with pytest.raises(DataError, match="gt_frames"):
        WindowRecord([0.0, 0.2], [np.zeros((1, 3))] * 2, [0, 2])
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"junk\.npz: unreadable shard"):
        load_records([tmp_path / "junk.npz"])
    with pytest.raises(DataError, match="no such shard"):
        load_records([tmp_path / "missing.npz"])


def test_training_samples_are_causal_irregular_and_normalised_from_the_keyframe(shards):
    records = load_records([shards / "train"])
    ds = WindowDataset(records, SAMPLING, seed=3, train=True, length=50)
    for i in range(20):
        s = ds[i]
        t, k = s["times"], int(s["k"])
        assert t[0] == 0.0 and np.all(np.diff(t) > 0), "frames in time order from the keyframe"
        assert k == len(t) - 1 and s["t"] == t[k], "the target is the window's last frame"
        assert 2 <= len(t) <= SAMPLING.max_frames
        assert s["inputs"].shape == (len(t), 64, 3)
        # keyframe points fill the normalised cube with the configured margin
        extent = s["inputs"][0].max(0) - s["inputs"][0].min(0)
        assert extent.max() <= 1 - SAMPLING.margin + 1e-5
        # correspondences at every ground-truth time up to the target, the last one at t
        m = s["corr_mask"]
        assert m.any() and np.all(np.diff(s["corr_times"][m]) > 0) and s["corr_times"][m][-1] == s["t"]
        assert np.array_equal(s["corr_targets"][m][-1], s["corrt"])
    assert not np.array_equal(ds[0]["inputs"], ds[1]["inputs"])
    assert all(np.array_equal(a, b) for a, b in zip(ds[5].values(), ds[5].values()))
    batch = collate_windows([ds[0], ds[1], ds[2]])
    assert batch["frame_mask"].shape == batch["inputs"].shape[:2]
    assert batch["frame_mask"].sum(1).tolist() == [len(ds[i]["times"]) for i in range(3)]


def test_training_keyframes_can_lose_a_band_across_the_image_as_a_camera_leaves_one(shards):
    """sampling.shape_gaps: that share of training samples' keyframe points (shape_inputs) lose a
    straight band across the image, 4-12 cm wide; validation samples never do."""
    from occflow_ros.data.windows import drop_band

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.linspace(-0.3, 0.3, 61), np.linspace(-0.9, 0.9, 181)), -1)
    sheet = np.column_stack([grid.reshape(-1, 2), np.full(61 * 181, 2.0)])  # a body's front
    for _ in range(20):
        kept = drop_band(sheet, rng)
        assert 0.5 * len(sheet) <= len(kept) < len(sheet)
        # what is gone is one straight strip: the removed points lie within ~6 cm of a line (the
        # strip's half-width at most, its direction as the principal axis finds it)
        gone = np.array(sorted(set(map(tuple, sheet)) - set(map(tuple, kept))))[:, :2]
        centred = gone - gone.mean(0)
        across = np.linalg.svd(centred, full_matrices=False)[2][1]
        assert np.abs(centred @ across).max() < 0.065
    records = load_records([shards / "train"])
    gappy = WindowSampling(**{**SAMPLING.__dict__, "shape_points": 200, "shape_gaps": 1.0})
    plain = WindowSampling(**{**SAMPLING.__dict__, "shape_points": 200})
    lost = []
    for training in (True, False):
        a = WindowDataset(records, gappy, seed=1, train=training, length=10)
        b = WindowDataset(records, plain, seed=1, train=training, length=10)
        lost.append(sum(not np.array_equal(a[i]["shape_inputs"], b[i]["shape_inputs"])
                        for i in range(10)))
    assert lost[0] >= 8 and lost[1] == 0
    with pytest.raises(DataError, match="shape_gaps"):
        WindowSampling(shape_gaps=1.5)


def test_optimising_a_fixed_batch_reduces_the_loss(shards):
    torch.manual_seed(0)
    ds = WindowDataset(load_records([shards / "train"]), SAMPLING, seed=0, train=True, length=8)
    batch = collate_windows([ds[i] for i in range(4)])
    model = OccupancyFlow(TINY)
    objective = Objective(model, SolverConfig("rk4", step_size=0.5))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        out = objective(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = float(out["loss"].detach()) if first is None else first
    final = float(objective(batch)["loss"].detach())
    assert final < 0.7 * first
    assert out["corr"] > 0 and model.velocity.fc_out.weight.grad.abs().sum() > 0


def test_training_is_deterministic_and_resuming_continues_the_same_run(shards, tmp_path):
    a = train(config(shards, tmp_path / "a"), progress=False)
    b = train(config(shards, tmp_path / "b"), progress=False)
    wa = load_checkpoint(tmp_path / "a" / "last.pt").model.state_dict()
    wb = load_checkpoint(tmp_path / "b" / "last.pt").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["validation"] == b["validation"]
    # stop at step 2, then resume to step 4: the same weights as the uninterrupted run
    train(config(shards, tmp_path / "c", steps=4, val_every=2), progress=False)
    half = config(shards, tmp_path / "d", steps=4, val_every=2)
    train(half, progress=False, stop_at=2)
    assert load_checkpoint(tmp_path / "d" / "last.pt").extra["step"] == 2
    train(half, resume=True, progress=False)
    wd = load_checkpoint(tmp_path / "d" / "last.pt").model.state_dict()
    wc = load_checkpoint(tmp_path / "c" / "last.pt").model.state_dict()
    assert all(torch.equal(wc[k], wd[k]) for k in wc)
    log = [json.loads(line) for line in (tmp_path / "d" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "validation" in e] == [2, 4]
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    assert "validation" in best.training and "command" in best.training


def test_a_run_directory_is_never_overwritten(shards, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="already holds files"):
        train(config(shards, out), progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(TrainError, match="nothing to resume"):
        train(config(shards, tmp_path / "fresh"), resume=True, progress=False)


def test_bad_training_settings_name_the_key():
    with pytest.raises(TrainError, match="batch_size"):
        TrainConfig(train_data=["x"], val_data=["y"], out_dir="o", batch_size=0)
    with pytest.raises(TrainError, match="unknown training setting"):
        TrainConfig.from_dict({"train_data": ["x"], "val_data": ["y"], "out_dir": "o", "lr0": 1})
    with pytest.raises(TrainError, match="input_points"):
        TrainConfig(train_data=["x"], val_data=["y"], out_dir="o", model=TINY)


def test_distributed_training_on_two_cpu_processes(shards, tmp_path):
    """torchrun with 2 ranks (gloo): both train on their own samples, rank 0 writes the run."""
    cfg = config(shards, tmp_path / "ddp", steps=2, val_every=2)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "from occflow_ros.training import TrainConfig, train\n"
        "cfg = TrainConfig.from_dict(json.load(open(sys.argv[1])))\n"
        "print(json.dumps(train(cfg, progress=False)['steps']))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
         str(script), str(cfg_path)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt.training["world_size"] == 2


def test_fine_tuning_starts_from_a_checkpoints_weights_and_refuses_other_sizes(shards, tmp_path):
    base = train(config(shards, tmp_path / "base", steps=6, val_every=6), progress=False)
    start = tmp_path / "base" / "last.pt"
    # steps=1 with no warm-up at lr 0: the fine-tuned weights must be the checkpoint's exactly, and
    # its step-0 validation the checkpoint's own score on the same data
    tuned = train(config(shards, tmp_path / "tuned", steps=1, val_every=1, lr=0.0, warmup_steps=0,
                         init_from=str(start)), progress=False)
    wa = load_checkpoint(start).model.state_dict()
    wb = load_checkpoint(tmp_path / "tuned" / "last.pt").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log = [json.loads(line) for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    step0 = [e for e in log if e["step"] == 0]
    assert step0 and step0[0]["init_from"] == str(start)
    assert step0[0]["validation"]["iou0"] == pytest.approx(base["validation"]["iou0"])
    assert tuned["validation"]["iou0"] == pytest.approx(base["validation"]["iou0"])
    # input points change no weight: allowed; another width is refused, naming the setting
    more = dict(input_points=96)
    train(config(shards, tmp_path / "more", steps=1, init_from=str(start),
                 model=ModelConfig(**{**TINY.to_dict(), **more}),
                 sampling=WindowSampling(**{**SAMPLING.__dict__, **more})), progress=False)
    wider = ModelConfig(**{**TINY.to_dict(), "decoder_hidden": 48})
    with pytest.raises(TrainError, match="decoder_hidden 32 there, 48 here"):
        train(config(shards, tmp_path / "wider", init_from=str(start), model=wider), progress=False)
    assert not (tmp_path / "wider").exists(), "a refused run writes nothing"
    with pytest.raises(TrainError, match="init_from: .*missing.pt"):
        train(config(shards, tmp_path / "none", init_from=str(tmp_path / "missing.pt")),
              progress=False)


def test_the_train_command_takes_init_from_and_says_what_is_wrong(shards, tmp_path, capsys):
    import yaml

    from occflow_ros.cli import train_main

    start = tmp_path / "base"
    train(config(shards, start, steps=2, val_every=2), progress=False)
    settings = config(shards, tmp_path / "unused").to_dict()
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(settings))
    argv = ["--config", str(tmp_path / "tiny.yaml"), "--no-progress", "--steps", "1"]
    assert train_main(argv + ["--out-dir", str(tmp_path / "ok"), "--init-from",
                              str(start / "last.pt")]) == 0
    log = (tmp_path / "ok" / "log.jsonl").read_text()
    assert '"init_from": "' + str(start / "last.pt") in log
    assert train_main(argv + ["--out-dir", str(tmp_path / "bad"), "--init-from",
                              str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert "occflow-train: error: init_from:" in err and "nope.pt" in err
    assert not (tmp_path / "bad").exists()



def test_fine_tuning_can_add_the_rigid_prior_and_train_only_the_motion(shards, tmp_path):
    start = tmp_path / "base"
    train(config(shards, start, steps=2, val_every=2), progress=False)
    rigid = ModelConfig(**{**TINY.to_dict(), "velocity_rigid": True})
    before = load_checkpoint(start / "last.pt").model.state_dict()
    # at lr 0 the run keeps its starting weights: the checkpoint's, but for the field's last layer,
    # which restarts at zero (the run starts from the rigid poses alone)
    train(config(shards, tmp_path / "lr0", steps=1, val_every=1, lr=0.0, warmup_steps=0,
                 model=rigid, init_from=str(start / "last.pt")), progress=False)
    start_weights = load_checkpoint(tmp_path / "lr0" / "last.pt").model.state_dict()
    for name in before:
        restarted = name.startswith("velocity.fc_out.")
        assert torch.equal(start_weights[name], torch.zeros_like(before[name]) if restarted
                           else before[name]), name
    tuned = train(config(shards, tmp_path / "rigid", steps=3, val_every=3, model=rigid,
                         init_from=str(start / "last.pt"),
                         trainable=["temporal_encoder", "velocity"]), progress=False)
    after = load_checkpoint(tmp_path / "rigid" / "last.pt").model
    assert after.config.velocity_rigid
    wb = after.state_dict()
    for name in before:  # the shape networks are frozen, the motion networks trained
        frozen = name.startswith(("spatial_encoder.", "decoder."))
        assert torch.equal(before[name], wb[name]) == frozen, name
    assert tuned["validation"]["corr_l2"] > 0
    with pytest.raises(TrainError, match="trainable must list"):
        config(shards, tmp_path / "x", trainable=["decoder", "wheels"])
    # the prior cannot be taken away again: a run without it refuses a checkpoint that has it
    with pytest.raises(TrainError, match="velocity_rigid True there, False here"):
        train(config(shards, tmp_path / "less", init_from=str(tmp_path / "rigid" / "last.pt")),
              progress=False)


def test_a_shape_run_trains_new_shape_networks_and_keeps_the_motion(shards, tmp_path):
    """objective 'shape' (the keyframe's occupancy alone) with feature-plane shape networks of
    another design than init_from's: the motion networks load from the checkpoint and stay as
    they were, the shape networks start afresh and train, from shape_points keyframe points."""
    start = tmp_path / "base"
    train(config(shards, start, steps=2, val_every=2), progress=False)
    before = load_checkpoint(start / "last.pt").model.state_dict()
    planes = ModelConfig(**{**TINY.to_dict(), "shape_encoder": "planes", "plane_resolution": 8,
                            "plane_channels": 4, "shape_points": 200, "local_neighbors": 0})
    sampling = WindowSampling(**{**SAMPLING.__dict__, "shape_points": 200})
    sample = WindowDataset(load_records([str(shards / "train")]), sampling)[0]
    assert sample["shape_inputs"].shape == (200, 3) and sample["inputs"].shape[1] == 64
    result = train(config(shards, tmp_path / "shape", steps=3, val_every=3, model=planes,
                          sampling=sampling, objective="shape", init_from=str(start / "last.pt")),
                   progress=False)
    assert set(result["validation"]) == {"iou0", "loss"}
    after = load_checkpoint(tmp_path / "shape" / "last.pt").model
    assert after.config.shape_encoder == "planes"
    weights = after.state_dict()
    for name in before:
        if name.startswith(("temporal_encoder.", "velocity.")):
            assert torch.equal(before[name], weights[name]), name
    fresh = OccupancyFlow(planes).state_dict()
    assert any(not torch.equal(fresh[k], weights[k]) for k in weights
               if k.startswith("spatial_encoder.")), "the shape networks did not train"
    with pytest.raises(TrainError, match="objective 'shape' trains only"):
        config(shards, tmp_path / "x", objective="shape", trainable=["velocity"])
    with pytest.raises(TrainError, match="objective must be one of"):
        config(shards, tmp_path / "x", objective="motion")
    with pytest.raises(TrainError, match=r"model.shape_points \(200\) must equal"):
        config(shards, tmp_path / "x", model=planes)
    # without trainable shape networks, another shape design is still refused
    with pytest.raises(TrainError, match="shape_encoder 'global' there, 'planes' here"):
        train(config(shards, tmp_path / "y", model=planes, sampling=sampling,
                     init_from=str(start / "last.pt")), progress=False)


def test_a_shape_run_at_another_plane_resolution_starts_from_the_checkpoints_shape_networks(
        shards, tmp_path):
    """The feature planes' convolutions and MLPs do not depend on the planes' resolution: a shape
    run that changes only plane_resolution (and shape_points) loads init_from's shape networks
    and fine-tunes them, where another shape design starts afresh; a run that does not train the
    shape networks still refuses another resolution."""
    planes = ModelConfig(**{**TINY.to_dict(), "shape_encoder": "planes", "plane_resolution": 8,
                            "plane_channels": 4, "shape_points": 200, "local_neighbors": 0})
    sampling = WindowSampling(**{**SAMPLING.__dict__, "shape_points": 200})
    base = tmp_path / "base"
    train(config(shards, base, steps=2, val_every=2, model=planes, sampling=sampling,
                 objective="shape", init_from=None), progress=False)
    before = load_checkpoint(base / "last.pt").model.state_dict()
    finer = ModelConfig(**{**planes.to_dict(), "plane_resolution": 16, "shape_points": 300})
    finer_sampling = WindowSampling(**{**SAMPLING.__dict__, "shape_points": 300})
    # lr 0: the run's weights are the ones it started from
    train(config(shards, tmp_path / "finer", steps=1, val_every=1, lr=0.0, model=finer,
                 sampling=finer_sampling, objective="shape", init_from=str(base / "last.pt")),
          progress=False)
    after = load_checkpoint(tmp_path / "finer" / "last.pt").model
    assert after.config.plane_resolution == 16
    weights = after.state_dict()
    shape_keys = [k for k in before if k.startswith(("spatial_encoder.", "decoder."))]
    assert shape_keys and all(torch.equal(before[k], weights[k]) for k in shape_keys)
    fresh = OccupancyFlow(finer).state_dict()
    assert any(not torch.equal(fresh[k], weights[k]) for k in shape_keys)
    # trained, it moves away from them
    train(config(shards, tmp_path / "tuned", steps=3, val_every=3, model=finer,
                 sampling=finer_sampling, objective="shape", init_from=str(base / "last.pt")),
          progress=False)
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt").model.state_dict()
    assert any(not torch.equal(before[k], tuned[k]) for k in shape_keys)
    # the motion networks alone cannot take another resolution
    with pytest.raises(TrainError, match="plane_resolution 8 there, 16 here"):
        train(config(shards, tmp_path / "motion", model=finer, sampling=finer_sampling,
                     init_from=str(base / "last.pt")), progress=False)
