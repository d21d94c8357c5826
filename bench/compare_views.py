"""Every public view of a log, in full, to compare two versions of mrtui on the same log.

    .venv/bin/python bench/compare_views.py dump LOG OUT.json   # with the mrtui to check
    .venv/bin/python bench/compare_views.py compare BEFORE.json AFTER.json

``dump`` copies LOG first (a writer migrates the copy to this mrtui's schema; LOG itself is
never written), then writes, per public view (store/views and the health views), its columns
and every row as JSON (floats to the last bit; maps and structs with their keys in order),
sorted. Run it with the old code (e.g. a ``git worktree`` of the older commit) and with the
new one on the same LOG, then ``compare``: it lists each view whose columns or rows differ
(rows only in one side, by count, with examples) and exits 1 if any does. Rows that differ
only in the last bits of floats (equal to 12 significant digits) are reported as such: a
sum, mean or variance over a group depends on the order its rows arrive in, which DuckDB
does not fix (one query can give either on different plans). A view only one side has is
listed, not failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def plain(v: Any) -> Any:
    """A value as JSON (floats are written to the last bit, as ``repr`` does), maps and
    structs with their keys in order."""
    if isinstance(v, dt.datetime | dt.date | dt.time | dt.timedelta | decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return [[plain(k), plain(x)] for k, x in v.items()]
    return v


def dump(log: Path, out: Path) -> None:
    from mrtui.store import EventLog, connect
    from mrtui.store.db import view_names

    with tempfile.TemporaryDirectory(prefix="mrtui-compare-") as d:
        db = Path(d) / log.name
        shutil.copyfile(log, db)
        EventLog(db).close()  # migrates the copy and stores this mrtui's views
        result: dict[str, Any] = {}
        with connect(db) as con:
            con.execute("SET enable_progress_bar = false")
            version = con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0]
            for view in view_names():
                t0 = time.perf_counter()
                cur = con.execute(f"SELECT * FROM {view}")
                cols = [c[0] for c in cur.description]
                rows = sorted(
                    json.dumps([plain(x) for x in r], ensure_ascii=False) for r in cur.fetchall()
                )
                result[view] = {"columns": cols, "rows": rows}
                took = time.perf_counter() - t0
                print(f"  {view}: {len(rows):,} rows ({took:.2f} s)", flush=True)
    out.write_text(json.dumps({"schema": version, "views": result}), encoding="utf-8")


def _rounded(row: str) -> str:
    def r(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.12g}")
        if isinstance(v, list):
            return [r(x) for x in v]
        return v

    return json.dumps(r(json.loads(row)))


def compare(before: Path, after: Path) -> bool:
    a = json.loads(before.read_text(encoding="utf-8"))
    b = json.loads(after.read_text(encoding="utf-8"))
    print(f"schema {a['schema']} -> {b['schema']}")
    same = True
    for view in sorted(set(a["views"]) | set(b["views"])):
        if view not in a["views"] or view not in b["views"]:
            print(f"  {view}: only in {'after' if view in b['views'] else 'before'}")
            continue
        va, vb = a["views"][view], b["views"][view]
        if va["columns"] != vb["columns"]:
            same = False
            print(f"  {view}: columns differ: {va['columns']} -> {vb['columns']}")
            continue
        if va["rows"] == vb["rows"]:
            print(f"  {view}: identical ({len(va['rows']):,} rows)")
            continue
        only_a = sorted(set(va["rows"]) - set(vb["rows"]))
        only_b = sorted(set(vb["rows"]) - set(va["rows"]))
        if sorted(map(_rounded, only_a)) == sorted(map(_rounded, only_b)):
            print(
                f"  {view}: equal to 12 significant digits ({len(va['rows']):,} rows; "
                f"{len(only_a):,} differ in the last bits of a float)"
            )
            continue
        same = False
        print(
            f"  {view}: DIFFER ({len(va['rows']):,} vs {len(vb['rows']):,} rows; "
            f"{len(only_a):,} only before, {len(only_b):,} only after)"
        )
        for r in only_a[:2]:
            print(f"    before: {r[:300]}")
        for r in only_b[:2]:
            print(f"    after:  {r[:300]}")
    print("every shared view equal" if same else "views DIFFER")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="every public view of a copy of LOG to OUT (JSON)")
    d.add_argument("log", type=Path)
    d.add_argument("out", type=Path)
    c = sub.add_parser("compare", help="two dumps; exit 1 if a shared view differs")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "dump":
        dump(args.log, args.out)
    else:
        sys.exit(0 if compare(args.before, args.after) else 1)


if __name__ == "__main__":
    main()
