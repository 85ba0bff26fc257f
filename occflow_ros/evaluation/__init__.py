"""Metrics, replay of recorded input through the tracker, and reports."""
