"""Engine tests: no Home Assistant involved."""
