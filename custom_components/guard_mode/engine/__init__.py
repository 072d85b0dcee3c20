"""Guard Mode's engine: what Home Assistant's glue (and any other client) uses of it.

No Home Assistant here. Two sides of one seam (docs/architecture.md):

* the **evidence side**, shared by every satellite — :class:`EngineWorker` (one thread, one
  tagger, every stream's :class:`EngineStream`), or the engine service (:mod:`.server`, spoken
  to through :mod:`.protocol` by an :class:`EngineClient` a stream): 16 kHz mono audio in,
  :data:`Evidence` out (:class:`WindowEvidence`, :class:`AlarmHit`, :class:`Gap`), through an
  :data:`EvidenceCallback`;
* the **decision side**, one per satellite and one thread: :class:`StreamDecision` (its
  :class:`Decider`, settings, "not a threat" marks and custom sounds) turns evidence into
  :class:`DeciderEvent` s.

Files are analyzed with both sides in one thread (:func:`analyze_file`, :class:`DetectingStream`).
"""

from .alarm_pattern import AlarmHit
from .analyze import DetectingStream, FileResult, analyze_file, analyze_samples
from .audio import SAMPLE_RATE, AudioFormatError, DcBlocker, Pcm16
from .client import (
    ClientTimeouts,
    Connector,
    EngineClient,
    RemoteEngineError,
    RemoteSettings,
    normalize_fingerprint,
)
from .clip_recorder import ClipRecorder
from .decider import (
    MAX_REMEMBERED,
    Decider,
    DeciderConfig,
    DeciderEvent,
    Detection,
    EventKind,
    Reason,
)
from .decision import StreamDecision
from .evidence import Embedding, Evidence, EvidenceCallback, EvidenceStream, Gap, WindowEvidence
from .examples import EVENT_DB, examples_from_files, split_examples
from .head import DEFAULT_HEAD, HEAD_SHA256, HeadError, read_head, shipped_head
from .labels import ALARM_SOUNDS, Sound
from .learning import MAX_EXAMPLES, CustomSound, TeachError, Vectors, teach, unit
from .tagger import DEFAULT_MODEL, Backend, ModelError, Tagger, load_shipped_tagger
from .worker import EngineStream, EngineWorker, StreamStats

__all__ = [
    "ALARM_SOUNDS",
    "DEFAULT_HEAD",
    "DEFAULT_MODEL",
    "EVENT_DB",
    "HEAD_SHA256",
    "MAX_EXAMPLES",
    "MAX_REMEMBERED",
    "SAMPLE_RATE",
    "AlarmHit",
    "AudioFormatError",
    "Backend",
    "ClientTimeouts",
    "ClipRecorder",
    "Connector",
    "CustomSound",
    "DcBlocker",
    "Decider",
    "DeciderConfig",
    "DeciderEvent",
    "DetectingStream",
    "Detection",
    "Embedding",
    "EngineClient",
    "EngineStream",
    "EngineWorker",
    "EventKind",
    "Evidence",
    "EvidenceCallback",
    "EvidenceStream",
    "FileResult",
    "Gap",
    "HeadError",
    "ModelError",
    "Pcm16",
    "Reason",
    "RemoteEngineError",
    "RemoteSettings",
    "Sound",
    "StreamDecision",
    "StreamStats",
    "Tagger",
    "TeachError",
    "Vectors",
    "WindowEvidence",
    "analyze_file",
    "analyze_samples",
    "examples_from_files",
    "load_shipped_tagger",
    "normalize_fingerprint",
    "read_head",
    "shipped_head",
    "split_examples",
    "teach",
    "unit",
]
