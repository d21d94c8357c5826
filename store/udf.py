"""Registering mrtui's Python functions (``mrtui_bt``, ``mrtui_eval_ci``) on DuckDB connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def create_function(
    con: Any, name: str, fn: Callable[..., Any], args: list[str], result: str, **options: Any
) -> None:
    """``con.create_function`` with SQL type names, idempotent: connections of one process to
    one file share a database instance, and a connection open in another thread (or the
    writer's lingering one) may have registered the function already."""
    import duckdb

    try:
        con.create_function(
            name, fn, [duckdb.sqltype(a) for a in args], duckdb.sqltype(result), **options
        )
    except (duckdb.CatalogException, duckdb.NotImplementedException) as exc:
        if "already" not in str(exc):
            raise
