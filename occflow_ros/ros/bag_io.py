"""rosbag2 files through rosbags: PointCloud2 input as rclpy messages, output written with message definitions."""

from __future__ import annotations

import importlib
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Type, Union

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import Reader, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import PointCloud2

from occflow_ros.ros.errors import BagError

__all__ = ["BagError", "InputBag", "OutputBag", "POINTCLOUD2_TYPE", "bag_topics", "message_definition",
           "open_input_bag"]

POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"

_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rosbag2 metadata version written. 9 stores QoS profiles as a YAML list that Humble's rosbag2 cannot
# parse; 8 keeps Humble's string form and is read by every later distro.
_METADATA_VERSION = 8
_REPO_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


# --------------------------------------------------------------------------------------------- input

class InputBag:
    """A rosbag2 bag (directory, or a bare .mcap / .db3 file) opened for reading one topic of one
    message type (PointCloud2 unless ``msg_class`` names another rclpy message class).

    Use :func:`open_input_bag`. Attributes: ``path``; ``topic`` (the chosen topic); ``topics``
    (every topic -> its message type); ``cloud_topics`` (the PointCloud2 topics, sorted);
    ``msg_class`` / ``msgtype`` (the class read and its 'pkg/msg/Name'); ``ignore`` (topic prefixes
    that are never picked when the topic is not named, e.g. ``("/ground_truth/",)``);
    ``message_count`` (messages on ``topic``, for a progress bar; also ``len(bag)``).
    Iterating yields ``(bag_time_ns, message)`` (a ``sensor_msgs.msg.PointCloud2`` by default) in
    bag-time order (rosbag2's receive time, not the header stamp), decoded by rclpy from the
    recorded CDR exactly as a subscription would. A context manager; close() releases the files.
    Any failure while reading, at open or mid-way, raises BagError naming the bag and the problem.
    """

    def __init__(self, path: Union[str, os.PathLike], topic: Optional[str] = None, *,
                 msg_class: type = PointCloud2, ignore: Tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.msg_class = msg_class
        self.ignore = tuple(ignore)
        self.msgtype = _type_name(msg_class)
        if not self.path.exists():
            raise BagError(f"input bag {self.path}: no such file or directory")
        self._reader = _open_reader(self.path)
        try:
            self._choose(topic)
        except BaseException:
            self._reader.close()
            raise

    def _choose(self, topic: Optional[str]) -> None:
        reader = self._reader
        self.topics: Mapping[str, str] = {c.topic: c.msgtype for c in sorted(reader.connections, key=lambda c: c.topic)}
        self.cloud_topics: Tuple[str, ...] = tuple(t for t, typ in self.topics.items() if typ == POINTCLOUD2_TYPE)
        if reader.message_count == 0:
            raise BagError(f"input bag {self.path}: the bag is empty (no messages; topics: {_listing(self.topics)})")
        if topic is None:
            candidates = tuple(t for t, typ in self.topics.items()
                               if typ == self.msgtype and not t.startswith(self.ignore))
            if not candidates:
                raise BagError(f"input bag {self.path}: has no {self.msgtype} topic to read "
                               f"(topics: {_listing(self.topics)})")
            if len(candidates) > 1:
                raise BagError(
                    f"input bag {self.path}: has {len(candidates)} {self.msgtype} topics, so the topic "
                    f"must be named (candidates: {', '.join(candidates)})")
            topic = candidates[0]
        elif topic not in self.topics and "/" + topic.lstrip("/") in self.topics:
            topic = "/" + topic.lstrip("/")
        if topic not in self.topics:
            raise BagError(f"input bag {self.path}: has no topic {topic!r} (topics: {_listing(self.topics)})")
        if self.topics[topic] != self.msgtype:
            raise BagError(
                f"input bag {self.path}: topic {topic!r} carries {self.topics[topic]}, not {self.msgtype}")
        self.topic = topic
        self._connections = [c for c in reader.connections if c.topic == topic]
        self.message_count = int(sum(c.msgcount for c in self._connections))
        if self.message_count == 0:
            raise BagError(f"input bag {self.path}: topic {topic!r} has no messages")

    def __len__(self) -> int:
        return self.message_count

    def raw_messages(self) -> Iterator[Tuple[int, bytes]]:
        """``(bag_time_ns, CDR bytes)`` of the topic's messages in bag-time order. Raises BagError when the
        storage is corrupt or holds fewer messages than its index promises (a truncated bag)."""
        if not self._reader.is_open:
            raise BagError(f"input bag {self.path}: is closed")
        count = 0
        try:
            source = self._reader.messages(connections=self._connections)
            for _, timestamp, raw in source:
                count += 1
                yield int(timestamp), bytes(raw)
        except BagError:
            raise
        except Exception as exc:  # rosbags, sqlite, zstd, struct: all mean the file is damaged
            raise BagError(
                f"input bag {self.path}: corrupt or truncated after {count} of {self.message_count} messages on "
                f"{self.topic!r} ({type(exc).__name__}: {exc})") from exc
        if count < self.message_count:
            raise BagError(
                f"input bag {self.path}: truncated: {count} of the {self.message_count} messages its index lists "
                f"on {self.topic!r} could be read")

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        for index, (timestamp, raw) in enumerate(self.raw_messages()):
            try:
                msg = deserialize_message(raw, self.msg_class)
            except Exception as exc:
                raise BagError(
                    f"input bag {self.path}: message #{index} on {self.topic!r} (bag time {timestamp} ns) is not a "
                    f"valid {self.msg_class.__name__} ({type(exc).__name__}: {exc})") from exc
            yield timestamp, msg

    def close(self) -> None:
        """Release the bag's files (idempotent)."""
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> InputBag:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


def open_input_bag(path: Union[str, os.PathLike], topic: Optional[str] = None, *,
                   msg_class: type = PointCloud2, ignore: Tuple[str, ...] = ()) -> InputBag:
    """Open a rosbag2 bag for reading PointCloud2 messages, or those of ``msg_class`` (see :class:`InputBag`).

    ``path``: a rosbag2 directory (sqlite3 or mcap storage, with metadata.yaml) or a bare .mcap or
    .db3 file. ``topic``: the topic to read ("/points" or "points"); None picks the only topic of
    the type whose name starts with none of the ``ignore`` prefixes. Raises BagError naming the bag
    and the problem: path missing, not a bag, unreadable or corrupt, empty, no or several topics of
    the type (listing them), topic missing (listing what exists), topic of another message type.
    """
    return InputBag(path, topic, msg_class=msg_class, ignore=ignore)


def bag_topics(path: Union[str, os.PathLike]) -> Dict[str, Tuple[str, int]]:
    """Every topic of a bag, sorted: ``{topic: (message type 'pkg/msg/Name', message count)}``.
    Raises BagError when the bag is missing or cannot be read."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"input bag {path}: no such file or directory")
    reader = _open_reader(path)
    try:
        out: Dict[str, Tuple[str, int]] = {}
        for c in sorted(reader.connections, key=lambda c: c.topic):
            typ, count = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (typ, count + int(c.msgcount))
        return out
    finally:
        reader.close()


def _listing(topics: Mapping[str, str]) -> str:
    return ", ".join(f"{t} [{typ}]" for t, typ in topics.items()) or "none"


def _open_reader(path: Path) -> Reader:
    if path.is_dir() and not (path / "metadata.yaml").exists():
        raise BagError(f"input bag {path}: not a rosbag2 bag (the directory has no metadata.yaml)")
    if path.is_file() and path.suffix not in (".mcap", ".db3"):
        raise BagError(f"input bag {path}: not a rosbag2 bag (a bag file must end in .mcap or .db3)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:
        hint = ""
        if "end magic" in str(exc):
            hint = ("; an MCAP file cut short (e.g. its recorder was killed) lacks its footer: "
                    "`mcap recover` can rebuild it")
        raise BagError(f"input bag {path}: cannot be read, not a valid bag or corrupt "
                       f"({type(exc).__name__}: {exc}){hint}") from exc
    return reader


# --------------------------------------------------------------------------------------------- definitions

def _type_name(msg_class: Any) -> str:
    """'pkg/msg/Name' of an rclpy message class."""
    parts = getattr(msg_class, "__module__", "").split(".")
    if not isinstance(msg_class, type) or len(parts) < 2 or parts[1] != "msg" or not hasattr(
            msg_class, "get_fields_and_field_types"):
        raise BagError(f"{msg_class!r} is not an rclpy message class")
    return f"{parts[0]}/msg/{msg_class.__name__}"


def _dependencies(desc: Tuple[Any, Any]) -> List[str]:
    kind, spec = desc
    if kind == Nodetype.NAME:
        return [spec]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        return _dependencies(spec[0])
    return []


class _Definitions:
    """Message definitions of the installed interface packages, gathered in a rosbags typestore.

    A type's .msg text comes from its package's share directory (ament_index), for
    occflow_ros_msgs falling back to the repository's msg/ folder; a package the ament index does
    not know falls back to rosbags' bundled store for $ROS_DISTRO (latest if unset). Every type is
    then checked field by field against the rclpy class that serializes it, so a bag never carries a
    definition other than the one its bytes were written with, whatever the distro, and needs no
    bundled snapshot of it.
    """

    def __init__(self) -> None:
        self.store = get_typestore(Stores.EMPTY)
        self.sources: Dict[str, str] = {}
        self._bundled: Any = None

    def _bundled_store(self) -> Any:
        if self._bundled is None:
            distro = os.environ.get("ROS_DISTRO", "").strip().lower()
            store = getattr(Stores, f"ROS2_{distro.upper()}", None) if distro else None
            self._bundled = get_typestore(store or Stores.LATEST)
        return self._bundled

    def _msg_text(self, typename: str) -> Optional[Tuple[str, str]]:
        package, _, name = typename.split("/")
        candidates = []
        try:
            from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
            try:
                candidates.append(Path(get_package_share_directory(package)) / "msg" / f"{name}.msg")
            except (PackageNotFoundError, LookupError, ValueError):
                pass
        except ImportError:
            pass
        if package == "occflow_ros_msgs":
            candidates.append(_REPO_MSG_DIR / f"{name}.msg")
        for candidate in candidates:
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8"), str(candidate)
        return None

    def ensure(self, typename: str) -> None:
        if typename in self.store.fielddefs:
            return
        found = self._msg_text(typename)
        if found is not None:
            text, source = found
            try:
                types = get_types_from_msg(text, typename)
            except Exception as exc:
                raise BagError(f"cannot parse the message definition of {typename} in {source}: {exc}") from exc
        else:
            bundled = self._bundled_store()
            if typename not in bundled.fielddefs:
                raise BagError(f"no message definition for {typename}: its package is not in the ament index "
                               "(is AMENT_PREFIX_PATH set?) and rosbags does not know it")
            types, source = {typename: bundled.fielddefs[typename]}, "rosbags' bundled store"
        for _, desc in types[typename][1]:
            for dependency in _dependencies(desc):
                self.ensure(dependency)
        self._check_against_rclpy(typename, types[typename][1], source)
        self.store.register(types)
        self.sources[typename] = source

    @staticmethod
    def _check_against_rclpy(typename: str, fields: List[Tuple[str, Any]], source: str) -> None:
        package, _, name = typename.split("/")
        try:
            cls = getattr(importlib.import_module(f"{package}.msg"), name)
        except (ImportError, AttributeError):
            return  # builtin types without a Python class of their own are checked through their users
        have = [f.rstrip("_") for f in cls.get_fields_and_field_types()]
        want = [f.rstrip("_") for f, _ in fields]
        if have != want:
            raise BagError(
                f"the message definition of {typename} from {source} has fields {want}, but the installed rclpy "
                f"class has {have}: a bag would describe its messages wrongly")

    def msgdef(self, typename: str) -> Tuple[str, str]:
        """(ros2msg definition text with its dependencies, RIHS01 hash) of the type."""
        self.ensure(typename)
        text, _ = self.store.generate_msgdef(typename, ros_version=2)
        return text, self.store.hash_rihs01(typename)


def message_definition(msg_class: Any) -> Tuple[str, str]:
    """The definition a bag connection of this rclpy message class carries: (ros2msg text with every
    nested type after a '=' * 80 + 'MSG: pkg/Name' line, RIHS01 type hash), from the installed
    interface packages. Raises BagError when no definition is found or it disagrees with the class."""
    return _Definitions().msgdef(_type_name(msg_class))


# --------------------------------------------------------------------------------------------- output

class OutputBag:
    """A new rosbag2 bag, written under a temporary sibling name and renamed into place on close().

    ``path``: the bag directory to create (must not exist: never overwritten). ``storage``: 'mcap'
    (default) or 'sqlite3'. Use as a context manager: leaving the block normally closes the bag and
    renames it to ``path``; an exception (KeyboardInterrupt included) discards it, so ``path`` only
    ever holds a complete bag. To keep what was written when SIGINT/SIGTERM stops a long replay,
    turn the signal into a flag, leave the loop and the block normally: close() only flushes the
    last chunk, writes the index and metadata and renames (milliseconds). A process killed outright
    leaves only the hidden ``.<name>.partial-*`` directory beside ``path``.
    Messages: ``add_topic(topic, msg_class)`` once per topic, then ``write(topic, stamp_ns, msg)``
    with an rclpy message (serialized here by rclpy) or its CDR ``bytes`` (e.g. from
    :func:`occflow_ros.ros.conversions.to_marker_array_cdr`).
    """

    def __init__(self, path: Union[str, os.PathLike], *, storage: str = "mcap") -> None:
        if storage not in _STORAGES:
            raise BagError(f"output bag storage must be one of {sorted(_STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        if os.path.lexists(self.path):
            raise BagError(f"output bag {self.path}: exists already; refusing to overwrite it "
                           "(choose another path or remove it)")
        self._definitions = _Definitions()
        self._topics: Dict[str, Tuple[Any, type]] = {}
        self._tmpdir: Optional[Path] = None
        self._writer: Optional[Writer] = None
        self.message_count = 0

    def open(self) -> OutputBag:
        """Create the temporary bag (done by ``with``)."""
        if self._writer is not None or self._tmpdir is not None:
            raise BagError(f"output bag {self.path}: already opened")
        if os.path.lexists(self.path):
            raise BagError(f"output bag {self.path}: exists already; refusing to overwrite it")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=parent))
            self._writer = Writer(self._tmpdir / self.path.name, version=_METADATA_VERSION,
                                  storage_plugin=_STORAGES[self.storage])
            self._writer.open()
        except (OSError, WriterError) as exc:
            self._discard()
            raise BagError(f"output bag {self.path}: cannot create it ({exc})") from exc
        return self

    def add_topic(self, topic: str, msg_class: type) -> None:
        """Register a topic of an rclpy message class, with the class's message definition and RIHS01
        hash (from the installed interface packages) on the connection."""
        writer = self._open_writer()
        if topic in self._topics:
            raise BagError(f"output bag {self.path}: topic {topic!r} was added already")
        typename = _type_name(msg_class)
        msgdef, rihs01 = self._definitions.msgdef(typename)
        try:
            connection = writer.add_connection(topic, typename, msgdef=msgdef, rihs01=rihs01)
        except WriterError as exc:
            raise BagError(f"output bag {self.path}: cannot add topic {topic!r}: {exc}") from exc
        self._topics[topic] = (connection, msg_class)

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Append one message at bag time ``stamp_ns`` (integer nanoseconds; use the input's header stamp).

        ``msg``: an instance of the topic's class (serialized with rclpy) or its CDR ``bytes``.
        """
        writer = self._open_writer()
        entry = self._topics.get(topic)
        if entry is None:
            raise BagError(f"output bag {self.path}: topic {topic!r} was not added (add_topic first; added: "
                           f"{', '.join(self._topics) or 'none'})")
        connection, msg_class = entry
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data = bytes(msg)
        elif isinstance(msg, msg_class):
            data = serialize_message(msg)
        else:
            raise BagError(f"output bag {self.path}: topic {topic!r} takes {msg_class.__name__} or its CDR bytes, "
                           f"got {type(msg).__name__}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, numbers.Integral) or not 0 <= stamp_ns < 2**63:
            raise BagError(f"output bag {self.path}: stamp_ns must be an integer in [0, 2**63), got {stamp_ns!r}")
        writer.write(connection, int(stamp_ns), data)
        self.message_count += 1

    def _open_writer(self) -> Writer:
        if self._writer is None:
            raise BagError(f"output bag {self.path}: not open (use it in a with block or call open())")
        return self._writer

    def close(self) -> None:
        """Finish the bag and move it to ``path`` (idempotent). If finishing fails, nothing is left."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        assert self._tmpdir is not None
        finished = self._tmpdir / self.path.name
        try:
            writer.close()
        except BaseException as exc:
            self._abort_writer(writer)
            self._discard()
            if isinstance(exc, Exception):
                raise BagError(f"output bag {self.path}: cannot finish it ({exc})") from exc
            raise
        try:
            if os.path.lexists(self.path):
                raise FileExistsError(f"{self.path} appeared while writing")
            os.rename(finished, self.path)
        except OSError as exc:
            raise BagError(f"output bag {self.path}: cannot move the finished bag into place ({exc}); "
                           f"it is left at {finished}") from exc
        self._discard()

    def abort(self) -> None:
        """Discard everything written (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._abort_writer(writer)
        self._discard()

    @staticmethod
    def _abort_writer(writer: Writer) -> None:
        try:
            writer.abort()
        except Exception:
            pass

    def _discard(self) -> None:
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> OutputBag:
        return self.open()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
