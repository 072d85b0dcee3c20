"""Tests that run Guard Mode inside a real Home Assistant."""
