"""rosbag2 IO on real bag files: round trips read back by plain rosbags, message definitions on the
connections, bare storage files, topic choice, every kind of bad bag, and the all-or-nothing output bag."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from builtin_interfaces.msg import Time
from occflow_ros_msgs.msg import TrackedMesh as TrackedMeshMsg
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from conftest import REPO
from occflow_ros.ros import (
    BagError,
    MessageError,
    OutputBag,
    message_definition,
    open_input_bag,
    read_tracked_mesh_msg,
    read_xyz,
    stamp_to_ns,
    to_marker_array_cdr,
    to_tracked_mesh_msg,
    xyz_cloud,
)
from occflow_ros.tracking import TrackedMesh

STORAGES = ["mcap", "sqlite3"]
STORAGE_FILE = {"mcap": "mcap", "sqlite3": "db3"}


def cloud(index: int, n_points: int = 300) -> PointCloud2:
    rng = np.random.default_rng(index)
    header = Header(frame_id="cam", stamp=Time(sec=1_700_000_000 + index, nanosec=123_456_789))
    return xyz_cloud(header, rng.normal(size=(n_points, 3)))


def mesh(index: int) -> TrackedMesh:
    rng = np.random.default_rng(100 + index)
    vertices = rng.normal(size=(40, 3)).astype(np.float32)
    return TrackedMesh(stamp=float(index), keyframe_stamp=0.0, keyframe_id=0, vertices=vertices,
                       faces=rng.integers(0, 40, (70, 3)).astype(np.uint32),
                       vertex_ids=np.arange(40, dtype=np.uint32), canonical_vertices=vertices - 1,
                       topology_changed=index == 0)


def write_replay_bag(path: Path, storage: str, n_frames: int = 4, n_points: int = 300) -> list:
    """Input clouds plus what a replay writes for them: markers (fast CDR bytes) and TrackedMesh (rclpy)."""
    frames = []
    with OutputBag(path, storage=storage) as bag:
        bag.add_topic("/camera/points", PointCloud2)
        bag.add_topic("/occflow/mesh", MarkerArray)
        bag.add_topic("/occflow/tracked_mesh", TrackedMeshMsg)
        for i in range(n_frames):
            msg, result = cloud(i, n_points), mesh(i)
            t = stamp_to_ns(msg.header.stamp)
            bag.write("/camera/points", t, msg)
            bag.write("/occflow/mesh", t, to_marker_array_cdr(result, msg.header))
            bag.write("/occflow/tracked_mesh", t, to_tracked_mesh_msg(result, msg.header))
            frames.append((t, msg, result))
    return frames


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip_is_read_back_by_our_reader_and_by_plain_rosbags(tmp_path, storage):
    path = tmp_path / "replay"
    frames = write_replay_bag(path, storage)

    with open_input_bag(path) as bag:
        assert bag.topic == "/camera/points" and bag.message_count == len(bag) == 4
        got = list(bag)
    assert [t for t, _ in got] == [t for t, _, _ in frames]
    for (_, msg), (_, sent, _) in zip(got, frames):
        assert isinstance(msg, PointCloud2) and msg.header == sent.header
        np.testing.assert_array_equal(read_xyz(msg), read_xyz(sent))

    # rosbags alone, with only the definitions the bag carries (AnyReader checks their RIHS01 hashes too)
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        by_topic: dict = {}
        for connection, t, raw in reader.messages():
            by_topic.setdefault(connection.topic, []).append((t, reader.deserialize(raw, connection.msgtype)))
    assert {k: len(v) for k, v in by_topic.items()} == {
        "/camera/points": 4, "/occflow/mesh": 4, "/occflow/tracked_mesh": 4}
    for i, (t, sent, result) in enumerate(frames):
        points = by_topic["/camera/points"][i][1]
        assert bytes(points.data) == bytes(sent.data) and points.header.frame_id == "cam"
        markers = by_topic["/occflow/mesh"][i][1].markers
        assert [m.action for m in markers] == ([3, 0] if i == 0 else [0])
        corners = np.array([(p.x, p.y, p.z) for p in markers[-1].points])
        np.testing.assert_array_equal(corners, result.vertices[result.faces.reshape(-1)])
        tracked = by_topic["/occflow/tracked_mesh"][i][1]
        np.testing.assert_array_equal(tracked.vertices.reshape(-1, 3), result.vertices)
        np.testing.assert_array_equal(tracked.triangles.reshape(-1, 3), result.faces)
        assert by_topic["/occflow/tracked_mesh"][i][0] == t
    assert read_tracked_mesh_msg(to_tracked_mesh_msg(frames[0][2], Header())).vertex_ids.size == 40


def installed_hash(typename: str) -> str:
    package, _, name = typename.split("/")
    description = json.loads((Path(get_package_share_directory(package)) / "msg" / f"{name}.json").read_text())
    (found,) = [h["hash_string"] for h in description["type_hashes"] if h["type_name"] == typename]
    return found


def test_message_definitions_are_the_installed_ones():
    """Definition text and RIHS01 hash equal what rosidl generated for the installed packages."""
    for cls, typename in ((TrackedMeshMsg, "occflow_ros_msgs/msg/TrackedMesh"),
                          (MarkerArray, "visualization_msgs/msg/MarkerArray"),
                          (PointCloud2, "sensor_msgs/msg/PointCloud2")):
        text, rihs01 = message_definition(cls)
        assert rihs01 == installed_hash(typename)
    text, _ = message_definition(TrackedMeshMsg)
    assert text.startswith("std_msgs/Header header\nbuiltin_interfaces/Time keyframe_stamp\nuint32 keyframe_id\n")
    assert "\nMSG: std_msgs/Header\n" in text and "\nMSG: builtin_interfaces/Time\n" in text
    with pytest.raises(BagError, match="is not an rclpy message class"):
        message_definition(dict)


@pytest.mark.parametrize("storage", STORAGES)
def test_tracked_mesh_connection_carries_its_definition_in_the_storage_file(tmp_path, storage):
    path = tmp_path / "out"
    write_replay_bag(path, storage, n_frames=1)
    storage_file = path / f"out.{STORAGE_FILE[storage]}"
    expected_text, expected_hash = message_definition(TrackedMeshMsg)
    if storage == "sqlite3":  # read the table with sqlite3 itself, not through rosbags
        with sqlite3.connect(storage_file) as db:
            rows = dict(db.execute("SELECT topic_type, encoded_message_definition FROM message_definitions"))
            hashes = dict(db.execute("SELECT name, type_description_hash FROM topics"))
        assert rows["occflow_ros_msgs/msg/TrackedMesh"] == expected_text
        assert hashes["/occflow/tracked_mesh"] == expected_hash
    else:  # the bare .mcap file: its schema record is the only place the definition is
        with Reader(storage_file) as reader:
            (connection,) = [c for c in reader.connections if c.topic == "/occflow/tracked_mesh"]
        assert connection.msgdef.data == expected_text
        assert b"ros2msg" in storage_file.read_bytes()
    assert "vertex_ids" in expected_text


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bare_storage_file_is_read_like_its_bag(tmp_path, storage):
    path = tmp_path / "bag"
    frames = write_replay_bag(path, storage, n_frames=2)
    with open_input_bag(path / f"bag.{STORAGE_FILE[storage]}", topic="camera/points") as bag:
        got = list(bag)
    assert [t for t, _ in got] == [t for t, _, _ in frames]
    assert bag.cloud_topics == ("/camera/points",)


def test_topic_choice_and_its_errors_list_what_exists(tmp_path):
    path = tmp_path / "two"
    with OutputBag(path) as bag:
        for topic in ("/left/points", "/right/points"):
            bag.add_topic(topic, PointCloud2)
            bag.write(topic, 5, cloud(1))
        bag.add_topic("/mesh", MarkerArray)
        bag.write("/mesh", 6, to_marker_array_cdr(mesh(0), Header()))
    with pytest.raises(BagError, match=r"has 2 sensor_msgs/msg/PointCloud2 topics.*/left/points, /right/points"):
        open_input_bag(path)
    with pytest.raises(BagError, match=r"has no topic '/depth'.*/left/points \[sensor_msgs/msg/PointCloud2\]"):
        open_input_bag(path, topic="/depth")
    with pytest.raises(BagError, match=r"topic '/mesh' carries visualization_msgs/msg/MarkerArray, not"):
        open_input_bag(path, topic="/mesh")
    with open_input_bag(path, topic="/right/points") as bag:
        assert [t for t, _ in bag] == [5]


def test_missing_path_directory_without_metadata_and_non_bag_files_are_named(tmp_path):
    with pytest.raises(BagError, match=r"input bag .*nowhere: no such file or directory"):
        open_input_bag(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BagError, match=r"folder: not a rosbag2 bag \(the directory has no metadata.yaml\)"):
        open_input_bag(tmp_path / "folder")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match=r"notes.txt: not a rosbag2 bag \(a bag file must end in .mcap or .db3\)"):
        open_input_bag(tmp_path / "notes.txt")
    (tmp_path / "fake.mcap").write_bytes(b"hello, not an mcap file at all")
    with pytest.raises(BagError, match=r"fake.mcap: cannot be read, not a valid bag or corrupt"):
        open_input_bag(tmp_path / "fake.mcap")
    (tmp_path / "badmeta").mkdir()
    (tmp_path / "badmeta" / "metadata.yaml").write_text("rosbag2_bagfile_information: [1, 2")
    with pytest.raises(BagError, match=r"badmeta: cannot be read"):
        open_input_bag(tmp_path / "badmeta")


@pytest.mark.parametrize("storage", STORAGES)
def test_empty_bag_and_bag_without_clouds_are_refused(tmp_path, storage):
    with OutputBag(tmp_path / "empty", storage=storage) as bag:
        bag.add_topic("/points", PointCloud2)
    with pytest.raises(BagError, match=r"empty: the bag is empty \(no messages; topics: /points"):
        open_input_bag(tmp_path / "empty")
    with OutputBag(tmp_path / "meshes", storage=storage) as bag:
        bag.add_topic("/mesh", MarkerArray)
        bag.write("/mesh", 1, to_marker_array_cdr(mesh(0), Header()))
    with pytest.raises(BagError, match=r"has no sensor_msgs/msg/PointCloud2 topic to read \(topics: /mesh \["):
        open_input_bag(tmp_path / "meshes")


@pytest.mark.parametrize("storage", STORAGES)
def test_truncated_storage_file_raises_bag_error(tmp_path, storage):
    path = tmp_path / "cut"
    write_replay_bag(path, storage, n_frames=6, n_points=2000)
    storage_file = path / f"cut.{STORAGE_FILE[storage]}"
    for keep in (0.5, 0.999):
        data = storage_file.read_bytes()
        storage_file.write_bytes(data[:int(len(data) * keep)])
        with pytest.raises(BagError, match=r"input bag .*cut: (cannot be read|corrupt or truncated|truncated)"):
            with open_input_bag(path) as bag:
                for _ in bag:
                    pass


def mcap_chunk_offsets(data: bytes) -> list:
    """File offsets of the records inside each (uncompressed) chunk record of an MCAP file."""
    offsets, pos = [], 8  # after the magic
    while pos < len(data) - 8:
        opcode = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        if opcode == 0x06:
            body = pos + 9 + 8 + 8 + 8 + 4
            (compression_length,) = struct.unpack_from("<I", data, body)
            offsets.append(body + 4 + compression_length + 8)
        if opcode == 0x02:  # footer
            break
        pos += 9 + length
    return offsets


def test_corruption_in_the_middle_of_an_mcap_raises_bag_error_after_the_good_messages(tmp_path):
    path = tmp_path / "mid"
    write_replay_bag(path, "mcap", n_frames=30, n_points=4000)  # ~1.5 MB: more than one 1 MiB chunk
    storage_file = path / "mid.mcap"
    data = bytearray(storage_file.read_bytes())
    chunks = mcap_chunk_offsets(bytes(data))
    assert len(chunks) >= 2
    second = chunks[1]
    assert data[second] == 0x05  # a message record: make its length run past the chunk
    data[second + 1:second + 9] = struct.pack("<Q", 2**40)
    storage_file.write_bytes(bytes(data))
    read = 0
    with pytest.raises(BagError, match=r"corrupt or truncated after \d+ of 30 messages on '/camera/points'"):
        with open_input_bag(path) as bag:
            for _ in bag:
                read += 1
    assert 0 < read < 30


def test_a_damaged_message_raises_bag_error_naming_it(tmp_path):
    path = tmp_path / "damaged"
    frames = write_replay_bag(path, "mcap", n_frames=3)
    storage_file = path / "damaged.mcap"
    points = bytes(frames[1][1].data)
    data = bytearray(storage_file.read_bytes())
    length_at = bytes(data).find(points) - 4  # the uint32 length of PointCloud2.data precedes its bytes
    assert length_at > 0 and struct.unpack_from("<I", data, length_at)[0] == len(points)
    data[length_at:length_at + 4] = struct.pack("<I", 2**31)
    storage_file.write_bytes(bytes(data))
    with open_input_bag(path) as bag:
        it = iter(bag)
        next(it)
        with pytest.raises(BagError, match=r"message #1 on '/camera/points' \(bag time \d+ ns\) is not a valid"):
            next(it)


def test_an_exception_inside_the_block_leaves_no_bag_and_no_partial_directory(tmp_path):
    target = tmp_path / "out"
    for error in (RuntimeError("tracker failed"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with OutputBag(target) as bag:
                bag.add_topic("/points", PointCloud2)
                bag.write("/points", 1, cloud(0))
                assert list(tmp_path.glob(".out.partial-*/out/metadata.yaml")) == []  # not finished yet
                assert len(list(tmp_path.glob(".out.partial-*"))) == 1
                raise error
        assert not os.path.lexists(target)
        assert list(tmp_path.iterdir()) == []


def test_an_existing_output_path_is_refused_and_left_untouched(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BagError, match=r"taken: exists already; refusing to overwrite it"):
        OutputBag(target)
    as_file = tmp_path / "file.mcap"
    as_file.write_text("also mine")
    with pytest.raises(BagError, match="exists already"):
        OutputBag(as_file, storage="sqlite3")
    assert (target / "keep.txt").read_text() == "mine" and as_file.read_text() == "also mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.mcap", "taken"]


def test_output_bag_misuse_is_named(tmp_path):
    with pytest.raises(BagError, match=r"storage must be one of \['mcap', 'sqlite3'\], got 'rosbag1'"):
        OutputBag(tmp_path / "x", storage="rosbag1")
    bag = OutputBag(tmp_path / "y")
    with pytest.raises(BagError, match="not open"):
        bag.add_topic("/points", PointCloud2)
    with bag:
        bag.add_topic("/points", PointCloud2)
        with pytest.raises(BagError, match="topic '/points' was added already"):
            bag.add_topic("/points", PointCloud2)
        with pytest.raises(BagError, match=r"topic '/mesh' was not added \(add_topic first; added: /points\)"):
            bag.write("/mesh", 1, cloud(0))
        with pytest.raises(BagError, match="takes PointCloud2 or its CDR bytes, got MarkerArray"):
            bag.write("/points", 1, MarkerArray())
        with pytest.raises(BagError, match=r"stamp_ns must be an integer in \[0, 2\*\*63\)"):
            bag.write("/points", 1.5, cloud(0))
        bag.write("/points", np.int64(7), cloud(0))
    bag.close()  # idempotent
    assert isinstance(BagError("x"), MessageError)
    with open_input_bag(tmp_path / "y") as reread:
        assert [t for t, _ in reread] == [7]


def test_sigint_turned_into_a_flag_ends_a_replay_with_a_complete_bag(tmp_path):
    """The documented pattern: the signal stops the loop, the block closes normally, the bag is whole."""
    target = tmp_path / "interrupted"
    child = textwrap.dedent(f"""
        import signal, sys, numpy as np
        from std_msgs.msg import Header
        from sensor_msgs.msg import PointCloud2
        from occflow_ros.ros import OutputBag, xyz_cloud
        stop = []
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        count = 0
        with OutputBag({str(target)!r}) as bag:
            bag.add_topic('/points', PointCloud2)
            while not stop:
                bag.write('/points', count + 1, xyz_cloud(Header(frame_id='cam'), np.zeros((100, 3))))
                count += 1
                if count == 20:
                    print('ready', flush=True)
        print(count, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    written = int(process.stdout.readline())
    assert process.wait(timeout=30) == 0
    with open_input_bag(target) as bag:
        assert bag.message_count == written >= 20
        assert sum(1 for _ in bag) == written
