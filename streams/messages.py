"""Typed messages exchanged between warmloop processes.

Each message is a dataclass with a schema name and version, scalar fields (sent in the
msgpack header) and array fields (sent as raw buffers). The transport stamps every
message with seq, source and t_sent; `t_capture` is the producer's monotonic time.

A message validates itself on construction and after decoding, so a bad one never
reaches a handler: see `ArraySpec` and each class's `check()`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, ClassVar, NamedTuple

import numpy as np

from streams.errors import InvalidMessage

# Array dtypes allowed on the wire, as numpy kind + item size.
WIRE_DTYPES = ("b1", "u1", "i4", "i8", "f2", "f4", "f8")
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_STRING = 4096  # characters in a string field
_NUMBER = (float, int)


@dataclass(frozen=True)
class ArraySpec:
    """What an array field may hold: dtypes, rank, fixed trailing sizes, finiteness."""

    dtypes: tuple[str, ...]
    ndim: int | None = None
    trailing: tuple[int, ...] = ()  # required sizes of the last dimensions
    finite: bool = False  # reject NaN and infinity
    optional: bool = False  # the field may be None

    def __post_init__(self) -> None:
        # numpy dtypes in both byte orders: a set lookup costs a fraction of dtype.str.
        allowed = {np.dtype(code).newbyteorder(order) for code in self.dtypes for order in "<>"}
        object.__setattr__(self, "_allowed", frozenset(allowed))

    def check(self, schema: str, name: str, value: Any) -> None:
        """Raise InvalidMessage if `value` breaks the spec. Labels are built only on error:
        this runs for every array of every message on the latency path."""
        if value is None:
            if not self.optional:
                raise InvalidMessage(f"{schema}.{name}: required array is missing")
            return
        if not isinstance(value, np.ndarray):
            raise InvalidMessage(
                f"{schema}.{name}: expected a numpy array, got {type(value).__name__}"
            )
        dtype = value.dtype
        if dtype not in self._allowed:
            raise InvalidMessage(
                f"{schema}.{name}: dtype {dtype} not allowed, expected {self.dtypes}"
            )
        if self.ndim is not None and value.ndim != self.ndim:
            raise InvalidMessage(
                f"{schema}.{name}: expected {self.ndim} dimensions, got shape {value.shape}"
            )
        if self.trailing and value.shape[-len(self.trailing) :] != self.trailing:
            raise InvalidMessage(
                f"{schema}.{name}: shape {value.shape} must end with {self.trailing}"
            )
        if self.finite and dtype.kind == "f" and not _all_finite(value):
            raise InvalidMessage(f"{schema}.{name}: contains NaN or infinity")


def _all_finite(value: np.ndarray) -> bool:
    # Two ufunc calls cost ~1.2 µs whatever the size; a state vector of a few numbers is
    # checked 4x faster in Python. logical_and.reduce skips the wrapper of ndarray.all().
    if value.size <= 16:
        return all(map(math.isfinite, (value if value.ndim == 1 else value.ravel()).tolist()))
    return bool(np.logical_and.reduce(np.isfinite(value), axis=None))


def dtype_code(dtype: np.dtype) -> str:
    """numpy dtype -> wire code such as 'f4' (byte order is sent separately)."""
    return f"{dtype.kind}{dtype.itemsize}"


class Stamp(NamedTuple):
    """Set by the transport: who sent a message, its place in that sender's topic, when.

    A named tuple rather than a frozen dataclass: one is built per received message."""

    seq: int
    source: str
    t_sent: float


_message = partial(dataclass, kw_only=True, eq=False)


@_message
class Message:
    """Base of every message. Subclasses declare SCHEMA, VERSION, SCALARS and arrays."""

    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    SCALARS: ClassVar[dict[str, type | tuple[type, ...]]] = {}
    ARRAYS: ClassVar[dict[str, ArraySpec]] = {}
    # Fields holding dict[str, np.ndarray], each entry checked against the spec.
    ARRAY_MAPS: ClassVar[dict[str, ArraySpec]] = {}

    t_capture: float = field(default_factory=time.monotonic)
    stamp: Stamp | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        values, schema = self.__dict__, self.SCHEMA
        t_capture = values["t_capture"]
        if not (type(t_capture) in _NUMBER and math.isfinite(t_capture)):
            raise InvalidMessage(f"{schema}.t_capture: must be a finite number")
        for name, kind in self.SCALARS.items():
            value = values[name]
            # Inline test of the common valid case; _check_scalar explains any other.
            common = (
                type(value) is kind
                and kind is not dict
                and (kind is not float or math.isfinite(value))
                and (kind is not str or len(value) <= MAX_STRING)
            )
            if not common:
                _check_scalar(f"{schema}.{name}", value, kind)
        for name, spec in self.ARRAYS.items():
            spec.check(schema, name, values[name])
        for name, spec in self.ARRAY_MAPS.items():
            mapping = values[name]
            if type(mapping) is not dict:
                raise InvalidMessage(f"{schema}.{name}: expected a dict of arrays")
            for key, value in mapping.items():
                if not (type(key) is str and _KEY.match(key)):
                    raise InvalidMessage(f"{schema}.{name}: bad key {key!r}")
                spec.check(schema, f"{name}[{key}]", value)
        self.check()

    def check(self) -> None:
        """Cross-field rules of a schema; raise InvalidMessage."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):
            if f.name == "stamp":
                continue
            if not _values_equal(getattr(self, f.name), getattr(other, f.name)):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _check_scalar(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidMessage(f"{name}: expected {kinds}, got bool")
    if not isinstance(value, kinds):
        raise InvalidMessage(
            f"{name}: expected {[k.__name__ for k in kinds]}, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMessage(f"{name}: must be finite")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise InvalidMessage(f"{name}: string longer than {MAX_STRING} characters")
    if isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(key, str) and _KEY.match(key)):
                raise InvalidMessage(f"{name}: bad key {key!r}")
            _check_scalar(f"{name}[{key}]", item, (int, float))


_STATE = ArraySpec(("f4", "f8"), ndim=1, finite=True)
_PLANE = ArraySpec(("f2", "f4"), finite=True)


@_message
class Observation(Message):
    """Low-dimensional state and optional named camera images at one control step."""

    SCHEMA: ClassVar[str] = "warmloop.Observation"
    SCALARS: ClassVar = {"step": int, "episode": int}
    ARRAYS: ClassVar = {"state": _STATE}
    ARRAY_MAPS: ClassVar = {"images": ArraySpec(("u1", "f2", "f4"))}

    state: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0
    episode: int = 0


@_message
class Frame(Message):
    """A camera frame: RGB, optional metric depth, intrinsics, camera-to-world pose."""

    SCHEMA: ClassVar[str] = "warmloop.Frame"
    SCALARS: ClassVar = {"scene_time": float, "camera": str}
    ARRAYS: ClassVar = {
        "rgb": ArraySpec(("u1",), ndim=3, trailing=(3,)),
        # Depth may hold infinity where a ray hits nothing, as real sensors report.
        "depth": ArraySpec(("f4",), ndim=2, optional=True),
        "intrinsics": ArraySpec(("f4", "f8"), ndim=2, trailing=(3, 3), finite=True),
        "pose": ArraySpec(("f4", "f8"), ndim=2, trailing=(4, 4), finite=True),
    }

    rgb: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray
    depth: np.ndarray | None = None
    scene_time: float = 0.0
    camera: str = ""

    def check(self) -> None:
        if self.depth is not None and self.depth.shape != self.rgb.shape[:2]:
            raise InvalidMessage(
                f"{self.SCHEMA}.depth: shape {self.depth.shape} != rgb {self.rgb.shape[:2]}"
            )
        if self.depth is not None and np.isnan(self.depth).any():
            raise InvalidMessage(f"{self.SCHEMA}.depth: contains NaN (use inf for no return)")
        problem = _camera_problem(self.intrinsics, self.pose)
        if problem:
            raise InvalidMessage(f"{self.SCHEMA}.{problem}")


def _camera_problem(intrinsics: np.ndarray, pose: np.ndarray) -> str | None:
    """Why a pinhole camera cannot be used, or None. Finite is not enough: fx = 0 or a
    sheared pose turns every ray into inf or NaN downstream (a reconstruction fitted on
    them is lost)."""
    k = np.asarray(intrinsics, np.float64)
    if not (k[0, 0] > 0 and k[1, 1] > 0) or not np.allclose(k[2], (0, 0, 1)):
        return "intrinsics: need fx > 0, fy > 0 and a last row of (0, 0, 1)"
    t = np.asarray(pose, np.float64)
    if not np.allclose(t[3], (0, 0, 0, 1)):
        return "pose: the last row must be (0, 0, 0, 1)"
    rotation = t[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        return "pose: the rotation must be orthonormal with determinant +1"
    return None


@_message
class ActionChunk(Message):
    """Actions [T, A] to execute at t_first, t_first + dt, ...; first_index is in-episode."""

    SCHEMA: ClassVar[str] = "warmloop.ActionChunk"
    SCALARS: ClassVar = {"t_first": float, "dt": float, "first_index": int, "episode": int}
    ARRAYS: ClassVar = {"actions": ArraySpec(("f4",), ndim=2, finite=True)}

    actions: np.ndarray
    t_first: float
    dt: float
    first_index: int = 0
    episode: int = 0

    def check(self) -> None:
        if self.actions.shape[0] < 1:
            raise InvalidMessage(f"{self.SCHEMA}.actions: at least one action is required")
        if self.dt <= 0:
            raise InvalidMessage(f"{self.SCHEMA}.dt: must be positive, got {self.dt}")
        if self.first_index < 0:
            raise InvalidMessage(f"{self.SCHEMA}.first_index: must be >= 0")


@_message
class TriPlanes(Message):
    """A 4D field: canonical planes [C,R,R], deformation planes [T,C,R,R], decoder weights."""

    SCHEMA: ClassVar[str] = "warmloop.TriPlanes"
    PLANES: ClassVar[frozenset[str]] = frozenset({"xy", "xz", "yz"})
    SCALARS: ClassVar = {"t_start": float, "t_end": float}
    ARRAYS: ClassVar = {"bounds": ArraySpec(("f4", "f8"), ndim=2, trailing=(2, 3), finite=True)}
    ARRAY_MAPS: ClassVar = {"canonical": _PLANE, "deformation": _PLANE, "decoder": _PLANE}

    canonical: dict[str, np.ndarray]
    deformation: dict[str, np.ndarray]
    decoder: dict[str, np.ndarray]
    bounds: np.ndarray
    t_start: float = 0.0
    t_end: float = 1.0

    def check(self) -> None:
        for name in ("canonical", "deformation"):
            planes = getattr(self, name)
            if set(planes) != self.PLANES:
                raise InvalidMessage(f"{self.SCHEMA}.{name}: needs planes {sorted(self.PLANES)}")
        if any(p.ndim != 3 for p in self.canonical.values()):
            raise InvalidMessage(f"{self.SCHEMA}.canonical: planes must be [C, R, R]")
        if any(p.ndim != 4 for p in self.deformation.values()):
            raise InvalidMessage(f"{self.SCHEMA}.deformation: planes must be [T, C, R, R]")
        if not self.t_end >= self.t_start:
            raise InvalidMessage(f"{self.SCHEMA}: t_end < t_start")


@_message
class Heartbeat(Message):
    """A node's liveness and counters, published periodically."""

    SCHEMA: ClassVar[str] = "warmloop.Heartbeat"
    SCALARS: ClassVar = {"node": str, "state": str, "counters": dict}

    node: str
    state: str = "running"
    counters: dict[str, float] = field(default_factory=dict)


@_message
class Error(Message):
    """A reply or broadcast saying something went wrong, with a machine-readable code."""

    SCHEMA: ClassVar[str] = "warmloop.Error"
    SCALARS: ClassVar = {"code": str, "message": str}

    code: str
    message: str = ""


@_message
class TimeSync(Message):
    """Clock-offset probe: the client's send time, the server's receive and send times."""

    SCHEMA: ClassVar[str] = "warmloop.TimeSync"
    SCALARS: ClassVar = {"t_client_send": float, "t_server_recv": float, "t_server_send": float}

    t_client_send: float
    t_server_recv: float = 0.0
    t_server_send: float = 0.0


@_message
class EpisodeResult(Message):
    """The outcome of one episode, published by a simulator or robot node."""

    SCHEMA: ClassVar[str] = "warmloop.EpisodeResult"
    SCALARS: ClassVar = {
        "episode": int,
        "seed": int,
        "success": bool,
        "score": float,
        "length": int,
        "task": str,
    }

    episode: int
    success: bool
    score: float
    length: int
    seed: int = 0
    task: str = ""


_KEYS = re.compile(r"^[a-z0-9_]+(\+[a-z0-9_]+)*$|^$")


@_message
class Controls(Message):
    """The keys a user holds now, such as "w+left" ("" for none): a world node moves
    its camera with them until the next Controls message. Key names are the receiver's
    to check (the Explore KEYMAP); here only their form is."""

    SCHEMA: ClassVar[str] = "warmloop.Controls"
    SCALARS: ClassVar = {"keys": str}

    keys: str = ""

    def check(self) -> None:
        if len(self.keys) > 64 or not _KEYS.match(self.keys):
            raise InvalidMessage(
                f"{self.SCHEMA}.keys: expected names joined by '+', got {self.keys[:64]!r}"
            )


@_message
class PointCloud(Message):
    """Coloured points in the world frame, e.g. a reconstruction's dense cells at
    `scene_time`: what a viewer or a recording shows without rebuilding the field."""

    SCHEMA: ClassVar[str] = "warmloop.PointCloud"
    SCALARS: ClassVar = {"scene_time": float}
    ARRAYS: ClassVar = {
        "points": ArraySpec(("f4",), ndim=2, trailing=(3,), finite=True),
        "colours": ArraySpec(("u1",), ndim=2, trailing=(3,)),
    }

    points: np.ndarray
    colours: np.ndarray
    scene_time: float = 0.0

    def check(self) -> None:
        if len(self.colours) != len(self.points):
            raise InvalidMessage(
                f"{self.SCHEMA}: {len(self.colours)} colours for {len(self.points)} points"
            )


REGISTRY: dict[tuple[str, int], type[Message]] = {}


def register(cls: type[Message]) -> type[Message]:
    """Make a message class decodable. Other packages register their own messages."""
    key = (cls.SCHEMA, cls.VERSION)
    if key in REGISTRY and REGISTRY[key] is not cls:
        raise ValueError(f"schema {key} registered twice")
    REGISTRY[key] = cls
    return cls


for _cls in (
    Observation,
    Frame,
    ActionChunk,
    TriPlanes,
    Heartbeat,
    Error,
    TimeSync,
    EpisodeResult,
    Controls,
    PointCloud,
):
    register(_cls)
