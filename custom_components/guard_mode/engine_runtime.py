"""The engine inside Home Assistant: the model loaded once, one worker thread for all satellites."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import logging
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import CONF_ENGINE, DOMAIN, ENGINE_REMOTE
from .engine import (
    DEFAULT_MODEL,
    Backend,
    EngineWorker,
    Evidence,
    EvidenceCallback,
    EvidenceStream,
    HeadError,
    ModelError,
    RemoteEngineError,
    Tagger,
    load_shipped_tagger,
    shipped_head,
)
from .remote import (
    ISSUE_REMOTE,
    RemoteEngine,
    async_describe,
    async_engine_repair,
    settings_from_options,
)
from .timeouts import timeouts

type Engine = EngineRuntime | RemoteEngine

_LOGGER = logging.getLogger(__name__)
ISSUE_MODEL = "model_unusable"
ISSUE_TAGGER = "model_failing"
MODEL_FILE = DEFAULT_MODEL  # the model Guard Mode ships (engine/data/yamnet.onnx)
ISSUE_NUMPY_BUSY = "numpy_backend_busy"
NUMPY_SATELLITE_LIMIT = 4  # from here on the numpy backend takes a noticeable share of a core


@dataclass
class EngineRuntime:
    """The in-process engine of the hub: one model, one worker thread for all satellites."""

    hass: HomeAssistant
    worker: EngineWorker
    available = True  # an in-process engine is always there

    def open_stream(self, name: str, callback: EvidenceCallback) -> EvidenceStream:
        """Open a satellite's stream; callback gets its evidence on the event loop."""
        loop = self.hass.loop

        def to_loop(stream: EvidenceStream, evidence: list[Evidence], time_s: float) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: Home Assistant stopped
                loop.call_soon_threadsafe(callback, stream, evidence, time_s)

        return self.worker.open_stream(name, to_loop)

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Availability never changes: nothing to listen to."""
        return lambda: None

    def diagnostics(self) -> dict[str, Any]:
        """Return the engine's state and counters."""
        stats = self.worker.stats
        return {
            "backend": self.backend,
            "model": self.model_path.name,
            "streams": len(self.worker.streams),
            "windows_tagged": stats.windows_tagged,
            "batches": stats.batches,
            "tagger_ms_per_window": round(1000 * stats.tagger_seconds / stats.windows_tagged, 3)
            if stats.windows_tagged
            else None,
            "errors": stats.errors,
        }

    @property
    def backend(self) -> str:
        """Return which tagger backend runs: onnxruntime or numpy."""
        return self.worker.tagger.backend

    @property
    def model_path(self) -> Path:
        """Return the model file in use."""
        return self.worker.tagger.model_path

    async def async_tagger(self, hass: HomeAssistant) -> Tagger:
        """Return the tagger (for analyzing files)."""
        return self.worker.tagger

    def check_load(self, hass: HomeAssistant, satellites: int) -> None:
        """Raise (or clear) the repair that suggests the fast backend for many satellites."""
        if self.backend == "numpy" and satellites >= NUMPY_SATELLITE_LIMIT:
            ir.async_create_issue(
                hass,
                DOMAIN,
                ISSUE_NUMPY_BUSY,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_NUMPY_BUSY,
                translation_placeholders={"count": str(satellites)},
            )
        else:
            ir.async_delete_issue(hass, DOMAIN, ISSUE_NUMPY_BUSY)

    def tagger_failing(self, error: str | None) -> None:
        """Show that the model fails (error), or no more (None); called on the worker thread."""
        shown = None if error is None else {"error": error[:200]}
        with contextlib.suppress(RuntimeError):  # the loop is closed: Home Assistant stopped
            self.hass.loop.call_soon_threadsafe(async_engine_repair, self.hass, ISSUE_TAGGER, shown)

    async def async_stop(self, hass: HomeAssistant) -> None:
        """Stop the worker thread (joined in an executor)."""
        await hass.async_add_executor_job(self.worker.stop)
        ir.async_delete_issue(hass, DOMAIN, ISSUE_TAGGER)  # a new start tries the model afresh


class EngineNotReady(Exception):
    """The engine can't start yet; a repair issue says what to do (key and placeholders)."""

    def __init__(self, issue: str, placeholders: dict[str, str]) -> None:
        """Name the repair issue and its placeholders (also the set-up error's translation)."""
        super().__init__(issue)
        self.issue = issue
        self.placeholders = placeholders


class EngineAuthFailed(Exception):
    """The remote engine refused the token: the set-up asks the user for the new one (reauth)."""


def _not_ready(hass: HomeAssistant, issue: str, placeholders: dict[str, str]) -> EngineNotReady:
    """Create the repair issue that tells the user what to do; return the error to raise.

    The set-up turns it into ConfigEntryNotReady, so Home Assistant retries by itself; the issue
    is deleted when a later set-up succeeds.
    """
    async_engine_repair(hass, issue, placeholders)
    return EngineNotReady(issue, placeholders)


async def async_start_engine(hass: HomeAssistant, options: Mapping[str, Any]) -> Engine:
    """Start the engine the options choose: in-process, or the remote engine service.

    An unreachable remote engine raises EngineNotReady with a repair issue that says what to
    check; one that refuses the token, EngineAuthFailed.
    """
    if options.get(CONF_ENGINE) != ENGINE_REMOTE:
        ir.async_delete_issue(hass, DOMAIN, ISSUE_REMOTE)  # not used (any more)
        return await async_start_local_engine(hass)
    settings = settings_from_options(options)
    try:
        info = await async_describe(settings)
    except RemoteEngineError as err:
        if err.reason == "invalid_auth":
            ir.async_delete_issue(hass, DOMAIN, ISSUE_REMOTE)  # the reauth flow says it
            raise EngineAuthFailed(str(err)) from err
        raise _not_ready(hass, ISSUE_REMOTE, {"error": str(err)}) from err
    for issue in (ISSUE_REMOTE, ISSUE_MODEL, ISSUE_NUMPY_BUSY):  # the in-process engine's are moot
        ir.async_delete_issue(hass, DOMAIN, issue)
    _LOGGER.debug("Using the remote engine (%s backend, %r)", info.backend, settings)
    waits = timeouts(hass)
    return RemoteEngine(
        hass, settings, info, timeouts=waits.remote, repair_after_s=waits.remote_repair_after_s
    )


async def async_start_local_engine(hass: HomeAssistant, backend: Backend = "auto") -> EngineRuntime:
    """Load the model and its detection head (in an executor) and start the worker.

    A missing or damaged file raises EngineNotReady with a repair issue that tells the user
    what to do. Both are kept from then on: an update that writes newer files while Home
    Assistant runs changes nothing until it restarts.
    """
    try:
        tagger = await hass.async_add_executor_job(load_shipped_tagger, MODEL_FILE, backend)
        head = await hass.async_add_executor_job(shipped_head)  # kept for streams and files
    except ModelError as err:
        error = str(err).removeprefix(f"{MODEL_FILE}: ")  # the message names the file already
        raise _not_ready(hass, ISSUE_MODEL, {"file": str(MODEL_FILE), "error": error}) from err
    except HeadError as err:
        raise _not_ready(hass, ISSUE_MODEL, {"file": str(err.path), "error": err.problem}) from err
    ir.async_delete_issue(hass, DOMAIN, ISSUE_MODEL)
    worker = EngineWorker(tagger, head=head)
    engine = EngineRuntime(hass, worker)
    worker.on_tagger_failing = engine.tagger_failing
    worker.start()
    _LOGGER.debug("Engine started with the %s backend (%s)", tagger.backend, MODEL_FILE)
    return engine
