"""How long Guard Mode waits: for audio, for a push agent, for the remote engine, to reconnect.

The waits on the Home Assistant side that tests shorten are fields of :class:`Timeouts` (a few
fixed ones stay module constants, see docs/architecture.md). Sources, satellites, the push view,
the remote engine and the notifier take theirs from :func:`timeouts`: ``hass.data[DATA_TIMEOUTS]``
when it is set, else the defaults. That is how tests (and the load test) give them short waits
instead of patching module constants. The engine service's own limits are in engine/bounds.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from homeassistant.core import HomeAssistant
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN
from .engine import ClientTimeouts, bounds


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds Guard Mode waits before it gives up, retries or reports."""

    probe_s: float = 8.0  # test before configure: a source's audio must arrive within this
    stall_s: float = 10.0  # a connected source that sends nothing this long is reconnected
    open_s: float = 5.0  # a stream URL: connecting and reading its header, each
    hello_s: float = bounds.HELLO_TIMEOUT_S  # a push agent must say hello within this
    resolve_interval_s: float = 1.0  # how often a push agent checks its satellite still exists
    resolve_grace_s: float = 5.0  # a push id unserved this long is gone (not just reloading)
    backoff_start_s: float = 1.0  # a satellite reconnects after 1, 2, 4 … s ...
    backoff_max_s: float = 60.0  # ... at most this long (each with ±25 % jitter) ...
    steady_s: float = 30.0  # ... and start at 1 s again after a connection that lasted this long
    remote: ClientTimeouts = field(default_factory=ClientTimeouts)  # the remote engine's client
    remote_repair_after_s: float = 60.0  # the remote engine unreachable this long: a repair
    notify_s: float = 30.0  # a notify or speak action not done by then has failed


DEFAULT_TIMEOUTS = Timeouts()
DATA_TIMEOUTS: HassKey[Timeouts] = HassKey(f"{DOMAIN}_timeouts")


def timeouts(hass: HomeAssistant) -> Timeouts:
    """Return the timeouts Guard Mode uses in this Home Assistant."""
    return hass.data.get(DATA_TIMEOUTS, DEFAULT_TIMEOUTS)
