"""mrtui's event log: an append-only DuckDB table, its migrations and derived views.

Imports nothing from mrtui's front end, Typer, Rich or Textual.
"""

from .db import SCHEMA_VERSION, connect
from .errors import (
    DuplicateUnit,
    LogBusy,
    LogNotFound,
    ReadOnlyViolation,
    SchemaMismatch,
    StoreError,
    WriterLocked,
)
from .events import NewEvent, canonical_json, content_key
from .log import EventLog

__all__ = [
    "SCHEMA_VERSION",
    "DuplicateUnit",
    "EventLog",
    "LogBusy",
    "LogNotFound",
    "NewEvent",
    "ReadOnlyViolation",
    "SchemaMismatch",
    "StoreError",
    "WriterLocked",
    "canonical_json",
    "connect",
    "content_key",
]
