"""A processor that publishes video, for the live demo and the agent tests (worker process).

`negative` inverts the luma of every I420 frame and publishes the result as the output track, so a viewer
can see that frames went supervisor → ring → worker → output ring → published track and back to the room.
Loaded by name as `framepool.demo.processors:Negative`.
"""

from __future__ import annotations

import numpy as np

from framepool.processors.api import NoParams, ProcessContext, VideoFormat, VideoFrame, VideoProcessor


class Negative(VideoProcessor[NoParams]):
    name = "negative"

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        self._out = np.empty(0, np.uint8)
        self._frames = 0

    @classmethod
    def input_format(cls, params: NoParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        if self._out.size != frame.data.size:
            self._out = np.empty_like(frame.data)
        luma = frame.width * frame.height
        np.subtract(255, frame.data[:luma], out=self._out[:luma])
        self._out[luma:] = frame.data[luma:]
        ctx.publish_video(self._out, frame.width, frame.height, "I420")
        self._frames += 1

    def close(self, ctx: ProcessContext) -> None:
        ctx.emit("negative", {"frames": self._frames})
