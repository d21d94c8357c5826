"""Opening the log: migrations, views, the BT function, and waiting out a busy file.

DuckDB lets one process hold a database file at a time. mrtui's writer therefore opens the
file only while it flushes a batch (milliseconds) and readers open it read-only for the length
of one query, retrying briefly while the other side holds it. Views are plain SQL files next to
this module; the writer stores them in the file, and a connection whose file holds other views
(an older writer) gets this mrtui's as temporary views, so they always match the installed mrtui.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from . import elo, evalstats
from .errors import LogBusy, LogNotFound, SchemaMismatch, StoreError

BUSY_TIMEOUT_S = 15.0
_LOCK_HINTS = (
    "Could not set lock",
    "Conflicting lock",
    "database is locked",
    # the same file open in this process in the other mode (read-only vs read-write), e.g. a
    # TUI reader while its own run's writer starts: as transient as a lock held elsewhere
    "different configuration than existing connections",
)


def _sql_files(folder: str) -> list[tuple[str, str]]:
    root = resources.files(__package__).joinpath(folder)
    files = sorted(
        (p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(".sql")
    )
    return files


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every packaged migration, in order."""
    out = []
    for name, sql in _sql_files("migrations"):
        out.append((int(name.split("_", 1)[0]), name, sql))
    return out


def view_sql() -> list[tuple[str, str]]:
    """Every view file, plus the health views generated from :mod:`.health`."""
    from . import health

    return sorted([*_sql_files("views"), ("70_health.sql", health.view_sql())])


@functools.cache
def views_hash() -> str:
    h = hashlib.sha256()
    for name, sql in view_sql():
        h.update(name.encode() + b"\0" + sql.encode() + b"\0")
    return h.hexdigest()


SCHEMA_VERSION = max(v for v, _, _ in migrations())

_CREATE = re.compile(r"CREATE\s+OR\s+REPLACE\s+(VIEW|MACRO)", re.IGNORECASE)
_VIEW_NAME = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)", re.IGNORECASE)


def view_names() -> list[str]:
    """Every view mrtui installs (store/views/*.sql and the generated health views), in the
    order they are created."""
    return [m.group(1) for _, sql in view_sql() for m in _VIEW_NAME.finditer(sql)]


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";\n") if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in s.splitlines())


def apply_views(con: Any, *, temporary: bool) -> None:
    """Create (or replace) every packaged view and macro on ``con``."""
    for _, sql in view_sql():
        for stmt in _statements(sql):
            if temporary:
                stmt = _CREATE.sub(lambda m: f"CREATE OR REPLACE TEMP {m.group(1)}", stmt, 1)
            con.execute(stmt)


def _is_lock_error(exc: Exception) -> bool:
    return any(h in str(exc) for h in _LOCK_HINTS)


def _holder(exc: Exception) -> str:
    m = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", str(exc))
    return f"{m.group(1)} (PID {m.group(2)})" if m else "another process"


def wait_marker(path: Path) -> Path:
    """A file a reader holds a shared ``flock`` on while it waits for the DuckDB file, so the
    writer knows to let it in at its next batch boundary (see ``EventLog._connection``)."""
    return path.with_name(path.name + ".readers")


def readers_waiting(path: Path) -> bool:
    """Whether some process holds a shared lock on ``wait_marker(path)``."""
    try:
        fd = os.open(wait_marker(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def open_duckdb(path: Path, *, read_only: bool, timeout: float = BUSY_TIMEOUT_S) -> Any:
    """Connect, retrying while another process holds the file. A reader that has to wait
    says so through :func:`wait_marker`."""
    import duckdb

    deadline = time.monotonic() + timeout
    delay = 0.005
    waiting: int | None = None
    try:
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only)
            except duckdb.Error as exc:
                if read_only and waiting is None and _is_lock_error(exc):
                    waiting = _signal_waiting(path)
                _retry_or_raise(path, exc, deadline)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    finally:
        if waiting is not None:
            os.close(waiting)  # drops the shared lock


def _signal_waiting(path: Path) -> int | None:
    try:
        fd = os.open(wait_marker(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None  # e.g. a read-only folder: the reader just waits its turn
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _retry_or_raise(path: Path, exc: Exception, deadline: float) -> None:
    """Return if ``exc`` is a lock held elsewhere and there is time left; else raise."""
    if not _is_lock_error(exc):
        if "not a valid DuckDB database" in str(exc) or "Unknown file type" in str(exc):
            raise StoreError(
                f"{path} is not a DuckDB event log; pass the .duckdb file that `mrtui run` wrote"
            ) from exc
        raise StoreError(f"could not open {path}: {exc}") from exc
    if time.monotonic() >= deadline:
        raise LogBusy(
            f"{path} is held by {_holder(exc)}; wait for it to finish or stop it, then try again"
        ) from exc


def schema_version(con: Any) -> int:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' "
        "AND database_name = current_database()"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return int(
        con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]
    )


def prepare(con: Any, path: Path) -> None:
    """Check the schema version and install the BT function and temporary views."""
    version = schema_version(con)
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path} was written by a newer mrtui (schema {version}, this "
            f"one knows {SCHEMA_VERSION}); upgrade mrtui to read it"
        )
    if version < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path} has schema {version} but this mrtui needs "
            f"{SCHEMA_VERSION}; run `mrtui migrate --db {path}` first"
        )
    elo.register(con)
    evalstats.register(con)
    if not views_current(con):
        apply_views(con, temporary=True)


def views_current(con: Any) -> bool:
    """True when the file already stores this mrtui's views (the writer keeps them current), so
    a reader can use them instead of creating temporary copies (~70 ms per connection)."""
    row = con.execute(
        "SELECT value FROM mrtui_meta WHERE name = 'views_sha256' ORDER BY set_at DESC LIMIT 1"
    ).fetchall()
    return bool(row) and row[0][0] == views_hash()


# Files this process writes through an EventLog, with the lock that serialises its DuckDB
# connections. DuckDB refuses a read-only connection in a process that holds the same file
# read-write, so readers in the writer's process (a TUI driving a run) share its mode and lock.
_WRITING: dict[str, Any] = {}


def register_writer(path: Path, lock: Any) -> None:
    _WRITING[str(path.resolve())] = lock


def unregister_writer(path: Path) -> None:
    _WRITING.pop(str(path.resolve()), None)


def written_here(path: Path) -> bool:
    """Whether this process writes ``path`` through an :class:`~mrtui.store.EventLog`."""
    return str(path.resolve()) in _WRITING


@contextmanager
def connect(
    path: str | Path, *, timeout: float = BUSY_TIMEOUT_S, sandbox: bool = False
) -> Iterator[Any]:
    """A read-only connection with mrtui's views, held only as long as the ``with`` block.

    ``sandbox`` additionally turns off file system access and locks the configuration, for
    running SQL a user typed (``mrtui sql``).
    """
    path = Path(path)
    if not path.exists():
        raise LogNotFound(f"no event log at {path}; create one with `mrtui run --db {path} ...`")
    lock = _WRITING.get(str(path.resolve()))
    if lock is not None:
        lock.acquire()
    try:
        con = open_duckdb(path, read_only=lock is None, timeout=timeout)
        try:
            prepare(con, path)
            if sandbox:
                con.execute("SET autoinstall_known_extensions = false")
                con.execute("SET autoload_known_extensions = false")
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
            yield con
        finally:
            con.close()
    finally:
        if lock is not None:
            lock.release()


def migrate(con: Any) -> list[str]:
    """Apply pending migrations on a read-write connection; returns the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    current = schema_version(con)
    applied = []
    for version, name, sql in migrations():
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in _statements(sql):
                con.execute(stmt)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def store_views(con: Any) -> bool:
    """Persist the packaged views into the file if they changed; True if it wrote them."""
    if views_current(con):
        return False
    elo.register(con)
    evalstats.register(con)
    apply_views(con, temporary=False)
    con.execute("INSERT INTO mrtui_meta VALUES ('views_sha256', ?, now())", [views_hash()])
    return True
