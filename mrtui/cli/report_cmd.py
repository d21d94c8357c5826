"""``mrtui report``: a self-contained HTML page of a log (issue 22)."""

from __future__ import annotations
