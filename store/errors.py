"""Errors raised by the event log. Each message says what failed and how to fix it."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for event-log errors."""

    title = "event log error"


class LogNotFound(StoreError):
    title = "no event log"


class LogBusy(StoreError):
    """Another process holds the database file longer than we were willing to wait."""

    title = "event log busy"


class WriterLocked(StoreError):
    """A second writer tried to open a log that a running process is writing."""

    title = "event log locked"


class SchemaMismatch(StoreError):
    title = "event log schema mismatch"


class DuplicateUnit(StoreError):
    """A completed unit of work was about to be logged twice."""

    title = "duplicate unit of work"


class ReadOnlyViolation(StoreError):
    title = "read-only"
