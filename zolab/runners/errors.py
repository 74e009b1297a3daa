"""Errors the runner raises for the platform to record (job failed, with step and reason)."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the run cannot continue (usually lr or eps too large)."""

    def __init__(self, step: int, value: float) -> None:
        self.step = step
        self.value = value
        super().__init__(f"non-finite loss {value} at step {step} (lower lr or eps, or use float32)")


class AssetError(RuntimeError):
    """A model or data set could not be loaded (offline, missing file, missing package)."""
