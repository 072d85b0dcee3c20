"""A Home Assistant store written after a delay, or at once when flushed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.core import callback
from homeassistant.helpers.storage import Store


class DelayedStore[T: Mapping[str, Any]]:
    """Writes data() a moment after the last change; flush writes a pending change now.

    Unloading flushes, so that no delayed write can recreate the file after a removal.
    """

    def __init__(self, store: Store[T], data: Callable[[], T], delay: float) -> None:
        """Write what data() returns to store, delay seconds after a change."""
        self._store = store
        self._data = data
        self._delay = delay
        self._pending = False

    async def async_load(self) -> T | None:
        """Return what was stored, None if nothing."""
        return await self._store.async_load()

    @callback
    def async_schedule(self) -> None:
        """Write after the delay."""
        self._pending = True
        self._store.async_delay_save(self._to_write, self._delay)

    async def async_save(self) -> None:
        """Write now."""
        self._pending = False
        await self._store.async_save(self._data())

    async def async_flush(self) -> None:
        """Write a pending change now."""
        if self._pending:
            await self.async_save()

    def _to_write(self) -> T:
        self._pending = False
        return self._data()
