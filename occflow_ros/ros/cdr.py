"""A small CDR writer for rclpy messages whose big sequences of flat structs come as numpy arrays."""

from __future__ import annotations

import importlib
import struct
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from occflow_ros.ros.errors import ConversionError

__all__ = ["ConversionError", "SequenceArrays", "serialize_cdr"]

# (id of a message object, field name) -> numpy array that replaces that field's value while writing.
SequenceArrays = Mapping[Tuple[int, str], np.ndarray]

_ENCAPSULATION_CDR_LE = b"\x00\x01\x00\x00"

# rosidl BasicType names -> little-endian numpy scalar type (its size is also its CDR alignment).
_BASIC = {
    "boolean": "u1", "octet": "u1", "char": "u1", "uint8": "u1", "int8": "i1",
    "int16": "<i2", "uint16": "<u2", "short": "<i2", "unsigned short": "<u2",
    "int32": "<i4", "uint32": "<u4", "long": "<i4", "unsigned long": "<u4",
    "int64": "<i8", "uint64": "<u8", "long long": "<i8", "unsigned long long": "<u8",
    "float": "<f4", "double": "<f8",
}
_STRUCT = {"u1": "B", "i1": "b", "<i2": "<h", "<u2": "<H", "<i4": "<i", "<u4": "<I", "<i8": "<q", "<u8": "<Q",
           "<f4": "<f", "<f8": "<d"}


def _basic(slot_type: Any) -> Optional[str]:
    """numpy code of a rosidl BasicType, None for any other slot type."""
    if type(slot_type).__name__ != "BasicType":
        return None
    code = _BASIC.get(slot_type.typename)
    if code is None:
        raise ConversionError(f"CDR writer does not support the primitive type {slot_type.typename!r}")
    return code


def _message_class(namespaced: Any) -> type:
    module = importlib.import_module(".".join(namespaced.namespaces))
    return getattr(module, namespaced.name)


class _Writer:
    """Appends CDR pieces; ``pos`` is the offset from the start of the payload (alignment origin)."""

    def __init__(self, arrays: SequenceArrays) -> None:
        self.chunks: List[Any] = [_ENCAPSULATION_CDR_LE]
        self.pos = 0
        self.arrays = arrays
        self.padding: List[Tuple[int, int]] = []  # (payload offset, length) of every alignment gap
        self.flat_cache: Dict[type, Optional[str]] = {}

    def align(self, size: int) -> None:
        gap = -self.pos % size
        if gap:
            self.padding.append((self.pos, gap))
            self.chunks.append(bytes(gap))
            self.pos += gap

    def raw(self, data: Any, nbytes: int) -> None:
        self.chunks.append(data)
        self.pos += nbytes

    def scalar(self, code: str, value: Any) -> None:
        size = np.dtype(code).itemsize
        self.align(size)
        if code == "u1" and isinstance(value, (bytes, bytearray)):  # octet: a bytes object of length 1
            value = value[0]
        elif isinstance(value, str):  # char: a one-character string
            value = ord(value)
        try:
            packed = struct.pack(_STRUCT[code], value)
        except (struct.error, TypeError) as exc:
            raise ConversionError(f"cannot write {value!r} as CDR {np.dtype(code).name}: {exc}") from exc
        self.raw(packed, size)

    def string(self, value: str) -> None:
        data = value.encode("utf-8") + b"\x00"
        self.scalar("<u4", len(data))
        self.raw(data, len(data))

    def primitives(self, code: str, value: Any, counted: bool, per_element: int = 1) -> None:
        if isinstance(value, (bytes, bytearray)):
            a = np.frombuffer(value, np.uint8)
        elif isinstance(value, list) and value and isinstance(value[0], (bytes, bytearray)):
            a = np.frombuffer(b"".join(value), np.uint8)
        else:
            a = np.asarray(value)
        a = np.ascontiguousarray(a, dtype=np.dtype(code)).reshape(-1)
        if counted:
            self.scalar("<u4", a.size // per_element)
        if a.size:
            self.align(a.dtype.itemsize)
            self.raw(memoryview(a).cast("B"), a.nbytes)

    def flat_code(self, cls: type) -> Optional[str]:
        """The one primitive every field of cls has (e.g. Point: float64), or None."""
        if cls not in self.flat_cache:
            codes = {_basic(t) for t in cls.SLOT_TYPES}
            self.flat_cache[cls] = codes.pop() if len(codes) == 1 and None not in codes else None
        return self.flat_cache[cls]

    def struct_array(self, owner: Any, name: str, element: Any, a: np.ndarray, counted: bool) -> None:
        cls = _message_class(element)
        code = self.flat_code(cls)
        n_fields = len(cls.SLOT_TYPES)
        if code is None:
            raise ConversionError(
                f"field {name!r} of {type(owner).__name__}: {cls.__name__} is not a struct of one primitive type, "
                "so it cannot be written from a numpy array")
        if a.ndim != 2 or a.shape[1] != n_fields:
            raise ConversionError(
                f"field {name!r} of {type(owner).__name__}: a numpy array for {cls.__name__}[] must have shape "
                f"(n, {n_fields}), got {a.shape}")
        self.primitives(code, a, counted, per_element=n_fields)

    def message(self, msg: Any) -> None:
        cls = type(msg)
        names = list(cls.get_fields_and_field_types())
        if not names:  # an empty ROS 2 message still carries one uint8 (structure_needs_at_least_one_member)
            self.scalar("u1", 0)
            return
        for name, slot_type in zip(names, cls.SLOT_TYPES):
            override = self.arrays.get((id(msg), name))
            self.field(msg, name, slot_type, getattr(msg, name) if override is None else override)

    def field(self, owner: Any, name: str, slot_type: Any, value: Any) -> None:
        kind = type(slot_type).__name__
        code = _basic(slot_type)
        if code is not None:
            self.scalar(code, value)
        elif kind in ("UnboundedString", "BoundedString"):
            self.string(value)
        elif kind == "NamespacedType":
            self.message(value)
        elif kind in ("UnboundedSequence", "BoundedSequence", "Array"):
            counted = kind != "Array"
            element = slot_type.value_type
            element_code = _basic(element)
            if element_code is not None:
                self.primitives(element_code, value, counted)
            elif isinstance(value, np.ndarray) and type(element).__name__ == "NamespacedType":
                self.struct_array(owner, name, element, value, counted)
            else:
                if counted:
                    self.scalar("<u4", len(value))
                for item in value:
                    self.field(owner, name, element, item)
        else:
            raise ConversionError(
                f"CDR writer does not support field {name!r} of {type(owner).__name__} ({kind})")


def serialize_cdr(msg: Any, *, sequence_arrays: SequenceArrays | None = None,
                  padding: List[Tuple[int, int]] | None = None) -> bytes:
    """Serialize an rclpy message to little-endian CDR (XCDR1), as ``rclpy.serialization.serialize_message`` does.

    Walks the message through its rosidl introspection (``get_fields_and_field_types``,
    ``SLOT_TYPES``), so it follows whatever definition the installed interface package has (e.g.
    Marker gained its texture and mesh_file fields in Humble; Foxy's has none). ``sequence_arrays``
    maps ``(id(message_object), field_name)`` to a numpy array that is written instead of that
    field's value: for a sequence of a struct whose fields all share one primitive type
    (``geometry_msgs/Point``: 3 float64, ``std_msgs/ColorRGBA``: 4 float32) an ``(n, n_fields)``
    array of any real dtype (cast to the field type), written with one copy instead of one Python
    object per element; for a sequence of primitives any array-like. Alignment gaps are zero bytes
    (Fast CDR leaves them uninitialised, so rclpy's output can differ there and only there); with
    ``padding`` given, the (payload offset, length) of every gap is appended to it (payload offsets
    start after the 4-byte encapsulation header). An empty message (std_msgs/Empty) is its one
    uint8, as rosbags writes it (rmw_fastrtps appends three more padding bytes). Returns ``bytes``
    (what ``Publisher.publish`` and the rosbags writer accept). Raises ConversionError for field
    types it does not handle (wide strings, long double) or a numpy array of the wrong shape.
    """
    writer = _Writer(sequence_arrays or {})
    writer.message(msg)
    if padding is not None:
        padding.extend(writer.padding)
    return b"".join(writer.chunks)
