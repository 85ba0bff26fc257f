"""occflow-replay on real bag files: determinism, what the output bag holds, bad bags, SIGINT, params files.

The input is a ray-cast sphere sliding in front of a camera (test/node_peer.py), tracked by the analytic
ball-and-drift model of test/analytic_models.py (accuracy is not the point here: the machinery is).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from node_peer import save_ball_checkpoint, sphere_message
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from occflow_ros.cli import replay_main
from occflow_ros.ros import OutputBag, message_definition, open_input_bag, read_xyz, xyz_cloud
from occflow_ros.ros.node_config import NodeConfigError, node_config_from_parameters
from occflow_ros.ros.params_file import load_params_file
from occflow_ros.apps.replay import DIAGNOSTICS_TOPIC, TIMING_KEYS, load_replay_config, make_tracker, replay_bag

INPUT_TOPIC = "/camera/depth/points"
OUT = "/occflow_reconstruct/"
NODE_TOPICS = [OUT + n for n in ("mesh", "correspondences", "tracked_mesh", "input_correspondences")]
START_NS = 1_700_000_000_000_000_000
FAST = """/**:
  ros__parameters:
    threads: 1
    tracker:
      max_frames: 4
      residual_threshold: 0.0
      meshing:
        resolution0: 16
        upsampling_steps: 1
        target_vertices: 0
"""


def write_sphere_bag(path: Path, frames: int, storage: str = "mcap") -> list:
    """A bag of the sphere stream at 30 Hz (bag time = header stamp + 2 ms, like a recorder's receive time)."""
    stamps = []
    with OutputBag(path, storage=storage) as bag:
        bag.add_topic(INPUT_TOPIC, PointCloud2)
        for i in range(frames):
            ns = START_NS + i * 33_333_333
            bag.write(INPUT_TOPIC, ns + 2_000_000, sphere_message(ns, i / 30 - 0.3, rng=np.random.default_rng(i)))
            stamps.append(ns)
    return stamps


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    params = root / "fast.yaml"
    params.write_text(FAST)
    model = save_ball_checkpoint(root / "ball.pt")
    stamps = write_sphere_bag(root / "sphere", 8)
    return {"root": root, "params": params, "model": model, "bag": root / "sphere", "stamps": stamps}


def replay(files, output: Path, **kwargs):
    config = load_replay_config(files["params"], model=files["model"])
    return replay_bag(files["bag"], output, make_tracker(config), config, **kwargs)


def messages(path: Path) -> dict:
    """topic -> [(bag time, raw CDR bytes)], read by plain rosbags with only the definitions the bag carries."""
    out: dict = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        for connection, t, raw in reader.messages():
            out.setdefault(connection.topic, []).append((t, bytes(raw)))
    return out


@pytest.fixture(scope="module")
def two_replays(files):
    first, second = files["root"] / "out1", files["root"] / "out2"
    return replay(files, first), replay(files, second), first, second


def test_a_bag_replayed_twice_gives_byte_identical_messages(two_replays):
    result, _, first, second = two_replays
    a, b = messages(first), messages(second)
    assert sorted(a) == sorted(b) == sorted([INPUT_TOPIC, DIAGNOSTICS_TOPIC, *NODE_TOPICS])
    for topic in [INPUT_TOPIC, *NODE_TOPICS]:
        assert a[topic] == b[topic], f"{topic} differs between two replays"
    assert result.keyframes >= 2 and result.meshes == 8  # max_frames 4: several segments, ids carried

    # /diagnostics: equal but for the measured times
    from rosbags.typesys import get_typestore as store

    def untimed(path):
        with AnyReader([path], default_typestore=store(Stores.EMPTY)) as reader:
            rows = []
            for connection, _, raw in reader.messages(
                    connections=[c for c in reader.connections if c.topic == DIAGNOSTICS_TOPIC]):
                status = reader.deserialize(raw, connection.msgtype).status[0]
                rows.append([(kv.key, kv.value) for kv in status.values if kv.key not in TIMING_KEYS])
        return rows
    assert untimed(first) == untimed(second) and len(untimed(first)) == 8


def test_the_output_bag_holds_the_input_and_every_node_topic_at_the_input_times(files, two_replays):
    _, _, first, _ = two_replays
    got = messages(first)
    with open_input_bag(files["bag"]) as bag:
        inputs = list(bag.raw_messages())
    assert got[INPUT_TOPIC] == inputs  # copied byte for byte, at the recorded bag times
    bag_times = [t for t, _ in inputs]
    for topic in NODE_TOPICS + [DIAGNOSTICS_TOPIC]:
        assert [t for t, _ in got[topic]] == bag_times, topic
    with AnyReader([first], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        typed = {c.topic: c for c in reader.connections}
        decoded = {topic: [reader.deserialize(raw, typed[topic].msgtype) for _, raw in got[topic]]
                   for topic in NODE_TOPICS}
    assert typed[OUT + "mesh"].msgtype == "visualization_msgs/msg/MarkerArray"
    assert typed[OUT + "tracked_mesh"].msgtype == "occflow_ros_msgs/msg/TrackedMesh"
    for i, stamp in enumerate(files["stamps"]):
        for topic in NODE_TOPICS:
            msg = decoded[topic][i]
            header = msg.markers[-1].header if topic == OUT + "mesh" else msg.header
            assert header.stamp.sec * 10**9 + header.stamp.nanosec == stamp, topic
            assert header.frame_id == "camera_depth_optical_frame", topic
        markers = decoded[OUT + "mesh"][i].markers
        assert markers[-1].type == Marker.TRIANGLE_LIST and len(markers[-1].points) > 0
        tracked = decoded[OUT + "tracked_mesh"][i]
        # the node's marker policy: a new keyframe's mesh replaces the old one atomically (DELETEALL + ADD)
        # (keyframe_stamp went through the tracker's float seconds: ~240 ns steps at epoch times)
        keyframe = abs(tracked.keyframe_stamp.sec * 10**9 + tracked.keyframe_stamp.nanosec - stamp) < 1000
        assert [m.action for m in markers] == ([Marker.DELETEALL, Marker.ADD] if keyframe else [Marker.ADD])
        assert tracked.vertices.size == tracked.canonical_vertices.size == 3 * tracked.vertex_ids.size > 0
        corr = decoded[OUT + "correspondences"][i]
        assert [f.name for f in corr.fields] == ["x", "y", "z", "vertex_id", "x0", "y0", "z0"]
    first_ids = decoded[OUT + "tracked_mesh"][0].vertex_ids
    assert np.array_equal(decoded[OUT + "tracked_mesh"][1].vertex_ids, first_ids)  # persistent ids


def test_the_tracked_mesh_connection_carries_its_message_definition(two_replays):
    _, _, first, _ = two_replays
    text, rihs01 = message_definition(TrackedMeshMsg)
    with AnyReader([first], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        (connection,) = [c for c in reader.connections if c.topic == OUT + "tracked_mesh"]
    assert connection.msgdef.data == text and "uint32[] vertex_ids" in text
    assert connection.digest == rihs01


def test_the_cli_replays_sqlite3_to_sqlite3_under_another_namespace(files, capsys):
    source = files["root"] / "sqlite_in"
    write_sphere_bag(source, 3, storage="sqlite3")
    target = files["root"] / "sqlite_out"
    rc = replay_main([str(source), str(target), "--model", str(files["model"]), "--params-file",
                      str(files["params"]), "--storage", "sqlite3", "--namespace", "robot1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "3 of 3 clouds" in capsys.readouterr().out
    assert (target / "sqlite_out.db3").is_file() and (target / "metadata.yaml").is_file()
    got = messages(target)
    assert len(got["/robot1/occflow_reconstruct/tracked_mesh"]) == 3 and len(got[INPUT_TOPIC]) == 3


def bad_bags(root: Path) -> dict:
    """name -> (bag path, extra CLI arguments, words the error must contain)."""
    root.mkdir()
    good = root / "good"
    write_sphere_bag(good, 6)
    meshes = root / "meshes"
    with OutputBag(meshes) as bag:
        bag.add_topic("/mesh", MarkerArray)
        bag.write("/mesh", 1, MarkerArray())
        bag.add_topic(INPUT_TOPIC, PointCloud2)
        bag.write(INPUT_TOPIC, 2, xyz_cloud(Header(frame_id="cam"), np.zeros((10, 3))))
    empty = root / "empty"
    with OutputBag(empty) as bag:
        bag.add_topic(INPUT_TOPIC, PointCloud2)
    truncated = root / "truncated"
    write_sphere_bag(truncated, 6)
    data = (truncated / "truncated.mcap").read_bytes()
    (truncated / "truncated.mcap").write_bytes(data[:len(data) // 2])
    cut_late = root / "cut_late"  # the index survives: the replay gets 5 clouds in, then the bag fails
    write_sphere_bag(cut_late, 6, storage="sqlite3")
    data = (cut_late / "cut_late.db3").read_bytes()
    (cut_late / "cut_late.db3").write_bytes(data[:int(len(data) * 0.999)])
    corrupt = root / "corrupt.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)
    return {
        "missing path": (root / "nowhere", [], "no such file or directory"),
        "missing topic": (good, ["--topic", "/camera/color"], "has no topic '/camera/color'"),
        "wrong message type": (meshes, ["--topic", "/mesh"],
                               "carries visualization_msgs/msg/MarkerArray, not sensor_msgs/msg/PointCloud2"),
        "empty bag": (empty, [], "the bag is empty"),
        "truncated file": (truncated, [], "an MCAP file cut short"),
        "truncated mid-replay": (cut_late, [], "corrupt or truncated after 5 of 6 messages"),
        "corrupt file": (corrupt, [], "cannot be read, not a valid bag or corrupt"),
    }


def test_every_bad_bag_is_one_error_line_with_exit_status_2_and_nothing_written(files, capsys):
    cases = bad_bags(files["root"] / "bad")
    for name, (bag, extra, words) in cases.items():
        target = files["root"] / f"out_{name.replace(' ', '_')}"
        rc = replay_main([str(bag), str(target), "--model", str(files["model"]), "--params-file",
                          str(files["params"]), "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2, f"{name}: {err}"
        assert len(err.splitlines()) == 1 and err.startswith("occflow-replay: error: "), f"{name}: {err}"
        assert str(bag) in err and words in err, f"{name}: {err}"
        assert not os.path.lexists(target), name
        assert not list(target.parent.glob(f".{target.name}.partial-*")), name


def test_an_existing_output_is_refused_and_left_as_it_was(files, capsys):
    taken = files["root"] / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    rc = replay_main([str(files["bag"]), str(taken), "--model", str(files["model"]), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "exists already; refusing to overwrite it" in err and str(taken) in err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"] and (taken / "mine.txt").read_text() == "keep"


def test_sigint_during_a_replay_stops_it_and_leaves_a_valid_shorter_bag(files):
    source = files["root"] / "long"
    write_sphere_bag(source, 60)
    target = files["root"] / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "occflow_ros.cli", "replay", str(source), str(target), "--model",
         str(files["model"]), "--params-file", str(files["params"])],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, done = b"", 0
    deadline = time.monotonic() + 60
    while done < 3 and time.monotonic() < deadline:  # the tqdm bar on stderr: "| 3/60"
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        counts = [int(c) for c in re.findall(rb"\| *(\d+)/60", seen)]
        done = max(counts, default=0)
    assert done >= 3, seen.decode(errors="replace")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, err.decode(errors="replace")
    assert b"interrupted" in out
    with open_input_bag(target, INPUT_TOPIC) as bag:
        written = bag.message_count
        assert [read_xyz(m).shape[1] for _, m in bag] == [3] * written
    assert 3 <= written < 60
    got = messages(target)
    assert len(got[OUT + "tracked_mesh"]) == len(got[DIAGNOSTICS_TOPIC]) == written
    assert not list(files["root"].glob(".interrupted.partial-*"))


def test_params_files_are_read_without_rclpy_and_mapped_by_the_nodes_own_function(tmp_path):
    shipped = load_params_file(REPO / "config" / "reconstruct.yaml")
    assert "tracker.meshing.resolution0" not in shipped and "tracker.preprocess.roi_min" in shipped
    assert node_config_from_parameters(shipped) == node_config_from_parameters({})  # the YAML lists defaults
    # the replay fills in the preset as the node does (no CUDA here: the CPU preset)
    replayed = load_replay_config(REPO / "config" / "reconstruct.yaml")
    assert (replayed.tracker.meshing.resolution0, replayed.threads) == (12, 1)
    layered = tmp_path / "layered.yaml"
    layered.write_text("/**:\n  ros__parameters:\n    tracker: {seed: 3, max_frames: 7}\n"
                       "other_node:\n  ros__parameters: {tracker: {seed: 99}}\n"
                       "/occflow_reconstruct:\n  ros__parameters:\n    tracker: {seed: 5}\n")
    config = load_replay_config(layered, model=tmp_path / "m.pt", overrides={"tracker.chunk_size": 64})
    assert (config.tracker.seed, config.tracker.max_frames, config.tracker.chunk_size) == (5, 7, 64)
    assert config.model_path == tmp_path / "m.pt"
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("camera:\n  ros__parameters: {fps: 30}\n")
    with pytest.raises(NodeConfigError, match=r"elsewhere.yaml: no section applies to the node /occflow_reconstruct"):
        load_params_file(elsewhere)
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    tracker: {max_frame: 7}\n")
    with pytest.raises(NodeConfigError, match=r"'tracker.max_frame' \(did you mean 'tracker.max_frames'\?\)"):
        load_replay_config(typo)


def test_input_stride_decimates_each_organized_cloud_in_image_space_before_tracking(files):
    """input.stride 1 and 2 on the same bag: each diagnostics 'points' is the decoded cloud's valid
    points, exactly those of pixels [::2, ::2] with stride 2 (counted here from the input bag)."""
    counts = {}
    for stride in (1, 2):
        config = load_replay_config(files["params"], model=files["model"],
                                    overrides={"input.stride": stride})
        out = files["root"] / f"stride{stride}"
        replay_bag(files["bag"], out, make_tracker(config), config)
        with AnyReader([out], default_typestore=get_typestore(Stores.EMPTY)) as reader:
            rows = []
            for connection, _, raw in reader.messages(
                    connections=[c for c in reader.connections if c.topic == DIAGNOSTICS_TOPIC]):
                status = reader.deserialize(raw, connection.msgtype).status[0]
                rows.append(int(dict((kv.key, kv.value) for kv in status.values)["points"]))
        counts[stride] = rows
    with open_input_bag(files["bag"], INPUT_TOPIC) as bag:
        clouds = [msg for _, msg in bag]
    assert counts[1] == [len(read_xyz(msg)) for msg in clouds]
    assert counts[2] == [len(read_xyz(msg, stride=2)) for msg in clouds]
    for full, strided in zip(counts[1], counts[2]):
        assert 0 < strided and abs(strided / full - 0.25) < 0.08
