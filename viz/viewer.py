"""The viewer: a 4D reconstruction as a coloured point cloud, camera frusta, the latest frame.

Sources: live topics (`frame` and `triplanes` from the publishers given) or a recorded
MCAP file. Each TriPlanes snapshot is turned back into its field and a point cloud is
extracted at the time of the newest frame. Open3D draws it with the frusta of the last
cameras; the newest camera image sits beside it.

Headless (no DISPLAY, or --out given) it uses Open3D's offscreen renderer (Vulkan
lavapipe on a CPU, EGL on a GPU) and writes PNG files and/or an MP4.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.node import Node, NodeType, config_from_args, run_node
from runtime.video import ImageSink
from streams import Frame, Latest, Subscriber, TriPlanes, parse_endpoint

log = logging.getLogger(__name__)


@dataclass
class ViewState:
    """The newest TriPlanes and the last frames, from any source."""

    triplanes: TriPlanes | None = None
    frames: deque | None = None

    def __post_init__(self) -> None:
        self.frames = deque(maxlen=12)

    def take(self, message) -> bool:
        """True when the picture should be redrawn (a new TriPlanes arrived)."""
        if isinstance(message, Frame):
            self.frames.append(message)
            return False
        if isinstance(message, TriPlanes):
            self.triplanes = message
            return True
        return False

    def draw(
        self,
        renderer,  # SceneRenderer, or an IsolatedRenderer around one
        resolution: int,
        threshold: float,
        max_height: float | None = None,
    ) -> np.ndarray:
        from world.reconstruction.exchange import from_message, point_cloud

        time = self.frames[-1].scene_time if self.frames else self.triplanes.t_start
        points, colours = point_cloud(
            from_message(self.triplanes), time, resolution, threshold or None
        )
        if max_height is not None:  # a cutaway: no ceiling between the eye and the room
            keep = points[:, 2] <= max_height
            points, colours = points[keep], colours[keep]
        cameras = [(f.intrinsics, f.pose, f.rgb.shape[1], f.rgb.shape[0]) for f in self.frames]
        latest = self.frames[-1].rgb if self.frames else None
        return renderer.render(points, colours, cameras, latest)


@dataclass
class ViewerConfig:
    source: list[str] = field(
        default_factory=list,
        metadata={"help": "publisher endpoints (frame, triplanes topics) or one .mcap file"},
    )
    out: str = field(default="", metadata={"help": "write PNG files here"})
    video: str = field(default="", metadata={"help": "write an MP4 here"})
    resolution: int = field(default=48, metadata={"help": "point-cloud grid size"})
    threshold: float = field(
        default=0.0,
        metadata={
            "help": "density above which a grid cell is drawn; 0 (default): chosen from the "
            "field, the densest tenth of the grid (at least 0.5)"
        },
    )
    max_height: float | None = field(default=None, metadata={"help": "drop points above (m)"})
    foxglove: bool = field(
        default=False,
        metadata={
            "help": "serve the endpoints' live topics to the Foxglove app over WebSocket "
            "instead of drawing (docs/visualization.md)"
        },
    )
    port: int = field(default=8765, metadata={"help": "with --foxglove: the WebSocket port"})

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("a viewer needs at least one source: endpoints or one .mcap file")
        if self.resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {self.resolution}")
        if self.max_height is not None:
            self.max_height = float(self.max_height)

    @property
    def recording(self) -> Path | None:
        """The .mcap file to draw, when the source is one."""
        if len(self.source) == 1 and self.source[0].endswith(".mcap"):
            return Path(self.source[0])
        return None

    def sink(self) -> ImageSink:
        out = Path(self.out) if self.out else None
        video = Path(self.video) if self.video else None
        return ImageSink(out if out or video else Path("runs") / "view", video)


class ViewerNode(Node):
    name = "viewer"

    def __init__(self, config: ViewerConfig):
        super().__init__()
        self.config = config
        self.sources, self.output = config.source, config.sink()
        self.resolution, self.threshold = config.resolution, config.threshold
        self.max_height = config.max_height
        self.state = ViewState()

    def configure(self) -> None:
        from viz.isolated import IsolatedRenderer

        self.renderer = IsolatedRenderer()  # Open3D keeps every image: bounded this way
        self.subscribers = [
            Subscriber(parse_endpoint(s, bind=False), {"frame": Latest(), "triplanes": Latest()})
            for s in self.sources
        ]

    def loop(self) -> None:
        while not self.stopping:
            redraw = False
            for subscriber in self.subscribers:
                for topic in ("frame", "triplanes"):
                    received = subscriber.recv(topic, timeout=0.0)
                    if received is not None:
                        redraw |= self.state.take(received.message)
            if redraw:
                image = self.state.draw(
                    self.renderer, self.resolution, self.threshold, self.max_height
                )
                self.output.write(image)
                self.counters["drawn"] += 1
            else:
                self._stop.wait(0.05)

    def shutdown(self) -> None:
        for subscriber in getattr(self, "subscribers", []):
            subscriber.close()
        self.close("renderer")
        self.output.close()


def view_recording(
    path: Path,
    output: ImageSink,
    resolution: int = 48,
    threshold: float = 0.0,  # 0: chosen from the field (point_cloud's auto threshold)
    renderer=None,  # default: an IsolatedRenderer of its own
    max_height: float | None = None,
) -> int:
    """Draw every TriPlanes snapshot of an MCAP recording; the number drawn.

    FileNotFoundError when there is no such file, DecodeError when it is not a
    recording (both carry a one-line message)."""
    from streams.recording import read_recording

    recorded_messages = iter(read_recording(path))  # fails here, before Open3D starts
    first = next(recorded_messages, None)
    if first is None:
        output.close()
        return 0
    from viz.isolated import IsolatedRenderer

    own = renderer is None
    renderer, state = renderer or IsolatedRenderer(), ViewState()
    try:
        for recorded in (first, *recorded_messages):
            if state.take(recorded.decode().message):
                output.write(state.draw(renderer, resolution, threshold, max_height))
    finally:
        output.close()
        if own:
            renderer.close()
    return output.count


NODE_TYPES = {
    "viewer": NodeType(
        ViewerConfig,
        connects=frozenset({"source"}),
        positional="source",
        lists=frozenset({"source"}),
    )
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    NODE_TYPES["viewer"].add_arguments(parser)


def main_from_args(args: argparse.Namespace) -> int:
    from streams import DecodeError

    try:
        config = config_from_args(ViewerConfig, args)
    except ValueError as exc:
        log.error("view: %s", exc)
        return 2
    if config.foxglove:
        from viz.foxglove_live import FoxgloveLive, FoxgloveLiveConfig

        try:
            import foxglove  # noqa: F401 - only to say which extra is missing
        except ImportError:
            sys.stderr.write("warmloop view --foxglove needs the [record] extra: "
                             "pip install 'warmloop[record]'\n")  # fmt: skip
            return 2

        if config.recording is not None:
            sys.stderr.write("warmloop view: --foxglove serves live endpoints; open a .mcap "
                             "file in Foxglove itself\n")  # fmt: skip
            return 2
        return run_node(FoxgloveLive(FoxgloveLiveConfig(config.source, port=config.port)))
    if config.recording is None:
        return run_node(ViewerNode(config))
    output = config.sink()
    try:
        drawn = view_recording(
            config.recording,
            output,
            config.resolution,
            config.threshold,
            max_height=config.max_height,
        )
    except (FileNotFoundError, DecodeError) as exc:
        sys.stderr.write(f"warmloop view: {exc}\n")
        return 2
    if not drawn:
        sys.stderr.write(
            f"warmloop view: {config.recording} holds no TriPlanes snapshots to draw (record "
            "the reconstruction node's `triplanes` topic, or view its endpoint live)\n"
        )
        return 1
    where = " and ".join(str(p) for p in (output.directory, config.video) if p)
    print(f"drew {drawn} snapshots into {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m viz.viewer", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
