"""Which decoder reads a dataset's videos, chosen once per process and logged once.

lerobot prefers torchcodec, which needs FFmpeg's shared libraries (libavcodec, libavformat,
libavutil, libswscale, ...) from the system; PyAV bundles its own FFmpeg. Left to choose,
lerobot tries torchcodec for every dataset it opens and, where FFmpeg is missing, logs
torchcodec's loading tracebacks before falling back. zk0 chooses here instead and hands the
choice to lerobot: one line saying which decoder reads the videos, and why when it is PyAV.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger(__name__)

FFMPEG_HINT = "install FFmpeg's shared libraries (Debian/Ubuntu: apt-get install ffmpeg)"


@dataclass(frozen=True)
class VideoDecoder:
    backend: str  # what lerobot's `video_backend` takes: "torchcodec" or "pyav"
    detail: str  # for the log line: the FFmpeg it uses, or why torchcodec is not used


def _load_torchcodec() -> ModuleType:
    # Importing torchcodec loads its libraries for the newest FFmpeg whose shared libraries load.
    return importlib.import_module("torchcodec")


@functools.cache
def video_decoder() -> VideoDecoder:
    """torchcodec when it loads (its FFmpeg libraries are present), else PyAV."""
    if importlib.util.find_spec("torchcodec") is None:
        return VideoDecoder("pyav", "torchcodec is not installed")
    try:
        torchcodec = _load_torchcodec()
    except (ImportError, OSError, RuntimeError) as err:
        # Its message holds a traceback per FFmpeg version tried: the first line says enough.
        first = str(err).strip().splitlines()[0].split(". ")[0].rstrip(".:") if str(err).strip() else type(err).__name__
        return VideoDecoder("pyav", f"torchcodec cannot load ({first}); {FFMPEG_HINT} for lerobot's faster decoder")
    version = getattr(torchcodec, "__version__", "?")
    return VideoDecoder(
        "torchcodec", f"torchcodec {version} with the system's FFmpeg {torchcodec.ffmpeg_major_version}"
    )


@functools.cache
def log_video_decoder() -> None:
    """Say once per process which decoder reads videos (call it when a dataset has videos)."""
    decoder = video_decoder()
    level = logging.INFO if decoder.backend == "torchcodec" else logging.WARNING
    log.log(level, "video decoder: %s (%s)", decoder.backend, decoder.detail)
