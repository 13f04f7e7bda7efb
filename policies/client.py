"""The robot's side of `warmloop serve`: numpy, pyzmq and msgpack, nothing else.

    client = PolicyClient("tcp://gpu-box:5570", name="arm-1")
    chunk = client.infer(state, step=s, episode=e)    # an ActionChunk
    chunk = client.infer(hand, step=s, images={"top": rgb})   # an image policy: uint8 HWC

The request carries the robot's state stamped with the robot's monotonic clock; the
chunk that comes back is due from that same stamp (`t_first`), so runtime.chunks'
ChunkExecutor executes it on the robot's clock whichever machine served it. A lost
reply is retried on a new socket (Lazy Pirate, streams.Client); after the last retry
`infer` raises streams.RequestTimeout and the robot holds its safe action until the
server answers again. CURVE: give the endpoint the keys,
`tcp://host:5570?secret=robot.key_secret&server=server.key` (docs/deployment.md).
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from streams import ActionChunk, Client, Observation, RemoteError, parse_endpoint


class PolicyClient:
    def __init__(
        self, endpoint: str, name: str = "", timeout: float = 0.5, retries: int = 2
    ) -> None:
        """`name` keys this robot's session on the server: keep it stable per robot."""
        self.name = name or f"robot-{uuid.uuid4().hex[:8]}"
        self._client = Client(
            parse_endpoint(endpoint, bind=False),
            source=self.name,
            timeout=timeout,
            retries=retries,
        )

    def infer(
        self,
        state: np.ndarray,
        step: int,
        episode: int = 0,
        t_capture: float | None = None,
        images: dict[str, np.ndarray] | None = None,
    ) -> ActionChunk:
        """The chunk answering this state; actions[0] is due at `t_capture` (default now).

        An image policy also takes this step's frame of each of its cameras, `images`
        {camera: (H, W, 3) uint8 RGB} as the camera gives it (the manifest's `cameras`).
        A new `episode`, or a `step` lower than the last, starts the server's warm start
        over. Raises RequestTimeout (server gone) or RemoteError (request refused)."""
        observation = Observation(
            state=np.asarray(state, np.float32),
            images={name: np.asarray(frame) for name, frame in (images or {}).items()},
            step=step,
            episode=episode,
            t_capture=time.monotonic() if t_capture is None else t_capture,
        )
        reply = self._client.request(observation).message
        if not isinstance(reply, ActionChunk):
            raise RemoteError("bad_reply", f"expected an ActionChunk, got {reply.SCHEMA}")
        return reply

    @property
    def reconnects(self) -> int:
        return self._client.reconnects

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *_) -> None:
        self.close()
