"""The engine inside Home Assistant: the model loaded once, one worker thread for all satellites."""

from __future__ import annotations

from dataclasses import dataclass
import logging
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .engine.tagger import DEFAULT_MODEL, Backend, ModelError, load_tagger
from .engine.worker import EngineWorker

_LOGGER = logging.getLogger(__name__)
ISSUE_MODEL = "model_unusable"
ISSUE_NUMPY_BUSY = "numpy_backend_busy"
NUMPY_SATELLITE_LIMIT = 4  # from here on the numpy backend takes a noticeable share of a core


@dataclass
class EngineRuntime:
    """The shared engine of the hub."""

    worker: EngineWorker

    @property
    def backend(self) -> str:
        """Return which tagger backend runs: onnxruntime or numpy."""
        return self.worker.tagger.backend

    @property
    def model_path(self) -> Path:
        """Return the model file in use."""
        return self.worker.tagger.model_path

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

    async def async_stop(self, hass: HomeAssistant) -> None:
        """Stop the worker thread (joined in an executor)."""
        await hass.async_add_executor_job(self.worker.stop)


async def async_start_engine(
    hass: HomeAssistant, model: Path = DEFAULT_MODEL, backend: Backend = "auto"
) -> EngineRuntime:
    """Load the model (in an executor) and start the worker.

    A missing or damaged model file raises ConfigEntryNotReady, so Home Assistant retries by
    itself, and raises a repair issue that tells the user what to do.
    """
    try:
        tagger = await hass.async_add_executor_job(load_tagger, model, backend)
    except ModelError as err:
        ir.async_create_issue(
            hass,
            DOMAIN,
            ISSUE_MODEL,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_MODEL,
            translation_placeholders={"file": str(model), "error": str(err)},
        )
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key=ISSUE_MODEL,
            translation_placeholders={"file": str(model), "error": str(err)},
        ) from err
    ir.async_delete_issue(hass, DOMAIN, ISSUE_MODEL)
    worker = EngineWorker(tagger)
    worker.start()
    _LOGGER.debug("Engine started with the %s backend (%s)", tagger.backend, model)
    return EngineRuntime(worker)
