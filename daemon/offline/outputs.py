"""Where `framepool process` writes its results and blobs, and the check of its output paths (supervisor
process).

`-o -` means stdout. Output paths are checked before any worker starts, so a missing directory is one line
(exit 2), not a traceback after the whole file was processed.

A blob (`ctx.send_bytes`) is written as a file beside the results, `<output>.blobs/<stream>/<topic>-<seq>
.<ext>` (the extension from its MIME type; `<processor>.<topic>-<seq>` when the topic is not the processor's
name, so two processors of a stream cannot collide), and one results line names it: a `ResultMessage` whose
data is `{"event": "bytes", "path", "size", "name", "mime_type", "attributes"}`. Without a results file
(`-o -` or no `--output`) the blob is not written and its line has `"path": null`.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import re
import sys
from pathlib import Path
from typing import IO

import msgspec

from framepool.errors import ConfigError
from framepool.pool import Blob, Result
from framepool.pool.results import ResultMessage

log = logging.getLogger(__name__)
STDOUT = Path("-")  # `-o -`


def check_outputs(output: Path | None, output_media: Path | None) -> None:
    """ConfigError (one line, exit 2) for an output that cannot be written, before anything starts."""
    for flag, path in (("--output", output), ("--output-media", output_media)):
        if path is None or (flag == "--output" and path == STDOUT):
            continue
        if path.is_dir():
            raise ConfigError(f"{flag} {path}: is a directory, expected a file")
        directory = path.parent
        if not directory.is_dir():
            raise ConfigError(f"{flag} {path}: directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise ConfigError(f"{flag} {path}: directory {directory} is not writable")


class ResultLines:
    """`--output`: results as JSON lines into a file or stdout. A reader that goes away (`-o - | head`)
    stops the writing with one warning, not an error per result."""

    _encoder = msgspec.json.Encoder()

    def __init__(self, output: Path) -> None:
        self.path = output
        self.to_stdout = output == STDOUT
        try:
            self._file: IO[bytes] | None = sys.stdout.buffer if self.to_stdout else output.open("wb")
        except OSError as exc:
            raise ConfigError(f"--output {output}: {exc.strerror}") from None

    def write(self, result: Result) -> None:
        self._write_line(ResultMessage.of(result, participant="", track=result.stream_id))

    def write_blob(self, blob: Blob) -> None:
        """Write `blob` beside the results file (not with stdout) and the line that names it."""
        path = self._blob_path(blob) if not self.to_stdout else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob.data)
        entry = {
            "event": "bytes",
            "path": None if path is None else str(path),
            "size": len(blob.data),
            "name": blob.name,
            "mime_type": blob.mime_type,
            "attributes": blob.attributes,
        }
        data = msgspec.Raw(self._encoder.encode(entry))
        self._write_line(
            ResultMessage(
                participant="",
                track=blob.stream_id,
                processor=blob.processor,
                topic=blob.topic,
                frame_time_us=blob.frame_time_us,
                seq=blob.seq,
                data=data,
            )
        )

    def _blob_path(self, blob: Blob) -> Path:
        extension = mimetypes.guess_extension(blob.mime_type) or ".bin"
        topic = blob.topic if blob.topic == blob.processor else f"{blob.processor}.{blob.topic}"
        directory = self.path.with_name(self.path.name + ".blobs") / _file_name(blob.stream_id)
        return directory / f"{_file_name(topic)}-{blob.seq}{extension}"

    def _write_line(self, line: ResultMessage) -> None:
        if self._file is None:
            return
        try:
            self._file.write(self._encoder.encode(line) + b"\n")
            if self.to_stdout:  # a reader of `-o -` (jq, a test) sees each result as it comes
                self._file.flush()
        except BrokenPipeError:
            log.warning("the reader of %s went away: results are no longer written", self)
            self._file = None
            # Python would complain at exit while flushing stdout into the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def close(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(BrokenPipeError):
            self._file.flush()
        if not self.to_stdout:
            self._file.close()

    def __str__(self) -> str:
        return "stdout" if self.to_stdout else str(self.path)


def _file_name(text: str) -> str:
    """`text` as one safe path component (a topic may hold slashes or dots)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "_"
