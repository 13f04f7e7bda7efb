"""Launch graphs: YAML files that list nodes, endpoints, QoS and restart policies.

    name: manipulation
    endpoints:                       # named; nodes refer to them as $name
      sim: ipc://{run_dir}/sim       # a string, or address + CURVE keys (see below)
    qos:                             # per topic: latest or queue(N)
      observation: queue(256)
    nodes:
      - name: sim
        type: sim                    # one of NODE_MODULES
        ends_run: true               # when it exits, the launch shuts everything down
        restart: never               # or {policy: on-failure, max_restarts: 3, backoff: 0.5}
        required: true               # when it fails for good, the run ends (the default)
        grace: 5                     # seconds it gets to exit after SIGTERM (the default)
        params: {publish: $sim, actions: $policy, episodes: 5}

An endpoint with CURVE keys, for a graph split across machines:

      sim:
        address: tcp://10.0.0.2:5560
        server_secret: keys/sim.key_secret    # the node that binds it
        clients: keys/allowed                 # public keys it accepts
        client_secret: keys/gpu.key_secret    # the nodes that connect to it
        server_public: keys/sim.key

`{run_dir}` in any string is the run's directory. Every error names the file and line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from runtime.node import ArgumentError, NodeType
from streams import InsecureEndpointError, parse_endpoint, parse_qos
from streams.security import check_bind


class LaunchError(ValueError):
    """A launch file that cannot run; the message names the file and line."""


# The node types a launch file may name, and the module that runs each. A module lists
# its types in NODE_TYPES (runtime.node.NodeType: the config dataclass whose fields are
# the type's parameters, and its endpoints). A module is imported only when a graph
# uses one of its types, so a robot's graph never imports torch or Open3D.
NODE_MODULES = {
    "sim": "sim.node",
    "policy_onnx": "policies.node",
    "policy_torch": "policies.node",
    "reconstruction": "world.reconstruction.node",
    "world": "world.generation.node",
    "viewer": "viz.viewer",
    "recorder": "runtime.recorder_node",
}


def lookup_node_type(kind: str) -> NodeType:
    """The NodeType named `kind`, from its module."""
    return importlib.import_module(NODE_MODULES[kind]).NODE_TYPES[kind]


MIN_BACKOFF = 0.2  # seconds: a crash loop never restarts faster than this
MAX_BACKOFF = 30.0  # seconds: the doubling stops here
MAX_RESTARTS = 100  # in a launch file; more is a crash loop, not a policy
WINDOW_RESTARTS, WINDOW = 5, 60.0  # at most 5 restarts in any 60 s, whatever max_restarts
DEFAULT_GRACE = 5.0  # seconds between SIGTERM and SIGKILL at shutdown


@dataclass(frozen=True)
class RestartPolicy:
    """When a failed node is started again: at most `max_restarts` times, `backoff`
    seconds after the first failure, doubling up to MAX_BACKOFF, and never more than
    WINDOW_RESTARTS times in WINDOW seconds (a node failing faster waits for the window)."""

    on_failure: bool = False
    max_restarts: int = 0
    backoff: float = 0.5  # seconds before the first restart; doubles each time

    def delay(self, restarts: int) -> float:
        """Seconds before restart number `restarts + 1`: doubling, capped, no overflow."""
        base = max(MIN_BACKOFF, self.backoff)
        return min(MAX_BACKOFF, base * 2.0 ** min(restarts, 32))


@dataclass
class NodeSpec:
    name: str
    module: str  # run as `python -m MODULE ARGV`
    argv: list[str]
    restart: RestartPolicy = RestartPolicy()
    ends_run: bool = False
    line: int = 0
    required: bool = True  # when it fails for good, the run ends (and says why)
    grace: float = DEFAULT_GRACE  # seconds it gets to exit after SIGTERM


@dataclass
class LaunchGraph:
    name: str
    path: Path
    nodes: list[NodeSpec]
    ipc_paths: list[Path]  # removed when the launch ends


# ---- YAML with line numbers ----------------------------------------------------------
class _LineDict(dict):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0  # of the mapping's first key
        self.key_lines: dict[Any, int] = {}  # line of each key

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _LineDict:
        key_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in key_lines:
                raise LaunchError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            key_lines[key] = key_node.start_mark.line + 1
        mapping = _LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = key_lines
        return mapping


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    return loader.construct_mapping(node, deep=True)


# Every mapping, nested ones too, becomes a _LineDict (PyYAML's default fills a plain dict).
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def load(path: Path, run_dir: Path, overrides: dict[str, Any] | None = None) -> LaunchGraph:
    """Read and validate a launch file; `overrides` maps "node.param" to a value."""
    path = Path(path)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        raise LaunchError(f"{path}: no such launch file") from None
    except LaunchError as exc:
        raise LaunchError(f"{path}:{str(exc).removeprefix('line ')}") from None
    except yaml.YAMLError as exc:
        raise LaunchError(f"{path}: not valid YAML ({exc})") from None
    return _Builder(path, run_dir, overrides or {}).build(document)


class _Builder:
    def __init__(self, path: Path, run_dir: Path, overrides: dict[str, Any]):
        self.path, self.run_dir, self.overrides = path, Path(run_dir), dict(overrides)

    def fail(self, line: int, message: str) -> LaunchError:
        return LaunchError(f"{self.path}:{line}: {message}")

    def build(self, document: Any) -> LaunchGraph:
        if not isinstance(document, _LineDict):
            raise self.fail(1, "a launch file is a mapping with name, endpoints, qos and nodes")
        unknown = set(document) - {"name", "endpoints", "qos", "nodes"}
        if unknown:
            raise self.fail(document.line, f"unknown top-level keys {sorted(unknown)}")
        self.endpoints = self._endpoints(document.get("endpoints") or _LineDict())
        self.qos = self._qos(document.get("qos") or _LineDict())
        nodes = document.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise self.fail(document.line, "nodes: expected a non-empty list")
        specs, names = [], set()
        for entry in nodes:
            spec = self._node(entry)
            if spec.name in names:
                raise self.fail(spec.line, f"duplicate node name {spec.name!r}")
            names.add(spec.name)
            specs.append(spec)
        if self.overrides:
            raise self.fail(1, f"overrides name no node parameter: {sorted(self.overrides)}")
        ipc = [Path(e["address"][len("ipc://") :]) for e in self.endpoints.values()]
        return LaunchGraph(
            str(document.get("name", self.path.stem)),
            self.path,
            specs,
            [p for p, e in zip(ipc, self.endpoints.values(), strict=True) if e["ipc"]],
        )

    def _text(self, value: Any) -> Any:
        return value.replace("{run_dir}", str(self.run_dir)) if isinstance(value, str) else value

    def _endpoints(self, entries: _LineDict) -> dict[str, dict[str, Any]]:
        endpoints = {}
        for name, value in entries.items():
            line = entries.line_of(name)
            spec = value if isinstance(value, dict) else {"address": value}
            address = self._text(spec.get("address"))
            if not isinstance(address, str):
                raise self.fail(line, f"endpoint {name!r}: needs an address")
            server = {"secret": spec.get("server_secret"), "clients": spec.get("clients")}
            client = {"secret": spec.get("client_secret"), "server": spec.get("server_public")}
            entry = {
                "address": address,
                "bind": _with_query(address, server),
                "connect": _with_query(address, client),
                "ipc": address.startswith("ipc://"),
            }
            for side in ("bind", "connect"):
                try:
                    parse_endpoint(self._text(entry[side]), bind=side == "bind")
                except ValueError as exc:
                    raise self.fail(line, f"endpoint {name!r}: {exc}") from None
            endpoints[name] = entry
        return endpoints

    def _qos(self, entries: _LineDict) -> dict[str, str]:
        for topic, text in entries.items():
            try:
                parse_qos(str(text))
            except ValueError as exc:
                raise self.fail(entries.line_of(topic), f"qos of topic {topic!r}: {exc}") from None
        return {topic: str(text) for topic, text in entries.items()}

    def _node(self, entry: Any) -> NodeSpec:
        if not isinstance(entry, _LineDict) or "name" not in entry or "type" not in entry:
            raise self.fail(getattr(entry, "line", 1), "each node needs a name and a type")
        name, line = str(entry["name"]), entry.line
        kind = str(self.overrides.pop(f"{name}.type", entry["type"]))
        unknown = set(entry) - {
            "name",
            "type",
            "params",
            "restart",
            "ends_run",
            "required",
            "grace",
        }
        if unknown:
            raise self.fail(line, f"node {name!r}: unknown keys {sorted(unknown)}")
        if kind not in NODE_MODULES:
            raise self.fail(
                line, f"node {name!r}: unknown type {kind!r} (known: {sorted(NODE_MODULES)})"
            )
        module, node_type = NODE_MODULES[kind], lookup_node_type(kind)
        params = dict(entry.get("params") or {})
        for key in [k for k in self.overrides if k.startswith(f"{name}.")]:
            params[key.split(".", 1)[1]] = self.overrides.pop(key)
        bad = set(params) - node_type.params
        if bad:
            raise self.fail(line, f"node {name!r}: unknown params {sorted(bad)} for type {kind}")
        for param, topic in node_type.qos.items():
            if topic in self.qos and param not in params:
                params[param] = self.qos[topic]
        argv = node_type.fixed_argv
        for key, value in params.items():
            argv += self._arguments(name, node_type, key, value, line)
        try:  # exactly what the node will do with these arguments when it starts
            node_type.parse(argv, prog=module)
        except (ArgumentError, ValueError) as exc:
            raise self.fail(line, f"node {name!r} ({kind}): {exc}") from None
        restart = self._restart(entry.get("restart"), name, line)
        ends_run = bool(entry.get("ends_run"))
        if ends_run and restart.on_failure:
            raise self.fail(
                line,
                f"node {name!r}: ends_run and a restart policy contradict each other: the "
                "run ends when this node exits, so it is never restarted",
            )
        return NodeSpec(
            name,
            module,
            argv,
            restart,
            ends_run,
            line,
            required=self._flag(entry, "required", True, name, line),
            grace=self._seconds(entry, "grace", DEFAULT_GRACE, name, line),
        )

    def _flag(self, entry: _LineDict, key: str, default: bool, name: str, line: int) -> bool:
        value = entry.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(line, f"node {name!r}: {key} is true or false, got {value!r}")
        return value

    def _seconds(self, entry: _LineDict, key: str, default: float, name: str, line: int):
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(line, f"node {name!r}: {key} is seconds > 0, got {value!r}")
        return float(value)

    def _arguments(self, name: str, node_type: NodeType, key: str, value: Any, line: int):
        values = value if key in node_type.lists and isinstance(value, list) else [value]
        resolved = [self._resolve(name, node_type, key, v, line) for v in values]
        if key == node_type.positional:
            return resolved
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):  # nodes declare booleans as --flag / --no-flag
            return [flag if value else "--no-" + key.replace("_", "-")]
        return [item for v in resolved for item in (flag, v)]

    def _resolve(self, name: str, node_type: NodeType, key: str, value: Any, line: int) -> str:
        if isinstance(value, str) and value.startswith("$"):
            endpoint = self.endpoints.get(value[1:])
            if endpoint is None:
                raise self.fail(line, f"node {name!r}: {key} names unknown endpoint {value!r}")
            if key not in node_type.binds | node_type.connects:
                raise self.fail(line, f"node {name!r}: {key} is not an endpoint parameter")
            text = self._text(endpoint["bind" if key in node_type.binds else "connect"])
        else:  # an empty YAML value (`video:`, `--set sim.video=`) is empty, not "None"
            text = self._text("" if value is None else str(value))
        if key in node_type.binds | node_type.connects:
            bind = key in node_type.binds
            try:
                endpoint = parse_endpoint(text, bind=bind)
                if bind:  # refused here, not only when the node starts and crash-loops
                    check_bind(endpoint.address, endpoint.curve, endpoint.allow_insecure)
            except (ValueError, InsecureEndpointError) as exc:
                raise self.fail(line, f"node {name!r}: {key}: {exc}") from None
        return text

    def _restart(self, value: Any, name: str, line: int) -> RestartPolicy:
        if value in (None, "never"):
            return RestartPolicy()
        if not isinstance(value, dict) or value.get("policy") != "on-failure":
            raise self.fail(
                line, f"node {name!r}: restart is 'never' or {{policy: on-failure, ...}}"
            )
        try:
            policy = RestartPolicy(
                True, int(value.get("max_restarts", 3)), float(value.get("backoff", 0.5))
            )
        except (TypeError, ValueError) as exc:
            raise self.fail(line, f"node {name!r}: restart: {exc}") from None
        if not 0 <= policy.max_restarts <= MAX_RESTARTS:
            raise self.fail(
                line,
                f"node {name!r}: max_restarts must be 0..{MAX_RESTARTS}, got "
                f"{policy.max_restarts} (a node that fails this often is a crash loop)",
            )
        if policy.backoff < MIN_BACKOFF:
            raise self.fail(
                line,
                f"node {name!r}: backoff must be >= {MIN_BACKOFF} s, got {policy.backoff} "
                "(a restart without a pause burns a core in a crash loop)",
            )
        return policy


def _with_query(address: str, options: dict[str, Any]) -> str:
    present = {k: v for k, v in options.items() if v}
    return f"{address}?{urlencode(present)}" if present else address
