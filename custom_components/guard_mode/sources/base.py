"""What every audio source is: connect, tell the format, deliver 16 kHz mono until it ends.

Sources convert once, where the audio comes in (:class:`..engine.audio.PcmConverter`, or PyAV's
decoder for streams): the satellite, its clips and the engine only ever see 16 kHz mono 16-bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
import logging

from ..engine import bounds
from ..engine.audio import Pcm16
from ..timeouts import Timeouts

_LOGGER = logging.getLogger(__name__)

# Called with each chunk of audio, converted to 16 kHz mono 16-bit (on the event loop).
AudioSink = Callable[[Pcm16], None]


class SourceError(Exception):
    """A source failed; ``reason`` is a translation key of the config flow's errors."""

    reason = "unknown"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        """Describe the failure in plain words (logged) with a reason key (shown)."""
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class CannotConnect(SourceError):
    """The host or URL can't be reached."""

    reason = "cannot_connect"


class NotAMicrophone(SourceError):
    """Reached something, but it doesn't stream audio (e.g. a Wyoming service of another kind)."""

    reason = "not_a_microphone"


class NoAudio(SourceError):
    """Connected, but no audio arrived (or it stalled)."""

    reason = "no_audio"


class BadAudio(SourceError):
    """Audio arrived in a format that can't be used."""

    reason = "bad_audio"


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The PCM format a source declared."""

    rate: int
    width: int
    channels: int

    def __str__(self) -> str:
        """Return e.g. '16000 Hz, 16-bit, mono'."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.rate} Hz, {8 * self.width}-bit, {layout}"


def check_format(rate: int, width: int, channels: int) -> AudioFormat:
    """Return the format if Guard Mode can use it (engine/bounds.py), else raise BadAudio."""
    if (problem := bounds.format_error(rate, width, channels)) is not None:
        raise BadAudio(problem)
    return AudioFormat(rate, width, channels)


class AudioSource(ABC):
    """A microphone Guard Mode can listen to."""

    kind: str  # "wyoming", "stream" or "push"
    satellite = "?"  # the satellite's name, for logs (set by the satellite)
    timeouts: Timeouts  # its probe, stall and open waits (given to its constructor)
    _throttled = False

    @abstractmethod
    async def probe(self) -> AudioFormat:
        """Connect, wait for audio and return its format; raise SourceError in plain words."""

    @abstractmethod
    async def run(self, sink: AudioSink) -> None:
        """Stream audio into sink until cancelled; raise SourceError when the source fails."""

    @abstractmethod
    def describe(self) -> str:
        """Return what the source is, for logs: no credential, host or address (redact.py)."""

    def throttled(self, wait_s: float) -> None:
        """Note that the peer sends faster than its budget allows (logged the first time)."""
        if not self._throttled:
            self._throttled = True
            _LOGGER.warning(
                "Satellite %s: %s sends faster than real time; taking its audio at %g× real "
                "time (the rest waits)",
                self.satellite,
                self.describe(),
                bounds.RATE_FACTOR,
            )
        _LOGGER.debug("Satellite %s: holding the source back %.2f s", self.satellite, wait_s)

    async def wait_before_retry(self, delay_s: float) -> None:
        """Wait delay_s before reconnecting; a source may end the wait early when it can tell."""
        await asyncio.sleep(delay_s)
