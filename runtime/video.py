"""Where nodes put the pictures they make: PNG files in a directory and/or one MP4.

The viewer writes its drawings here, the world node its generated frames. imageio is
imported only when a sink opens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MACRO_BLOCK = 8  # H.264 wants frame sides divisible by this; frames are cropped to fit


class ImageSink:
    """PNG files in `directory` (view_00000.png, ...) and/or one MP4 at `video`."""

    def __init__(self, directory: Path | None, video: Path | None, fps: float = 2.0):
        self.directory, self.count = directory, 0
        self.writer = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("view_*.png"):  # a previous run's pictures
                stale.unlink()
        if video is not None:
            import imageio.v2 as imageio

            video.parent.mkdir(parents=True, exist_ok=True)
            self.writer = imageio.get_writer(video, fps=fps, macro_block_size=MACRO_BLOCK)

    def write(self, image: np.ndarray) -> None:
        if self.directory is not None:
            import imageio.v2 as imageio

            imageio.imwrite(self.directory / f"view_{self.count:05d}.png", image)
        if self.writer is not None:
            height = image.shape[0] // MACRO_BLOCK * MACRO_BLOCK
            width = image.shape[1] // MACRO_BLOCK * MACRO_BLOCK
            self.writer.append_data(image[:height, :width])
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
