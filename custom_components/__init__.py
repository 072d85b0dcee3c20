"""Home Assistant custom integrations (this repository ships guard_mode)."""
