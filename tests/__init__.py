"""Tests for Guard Mode."""
