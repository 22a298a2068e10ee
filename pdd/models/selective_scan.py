"""Where `pdd.models` re-exports `selective_scan` from: the scan itself lives in `pdd.ops`.

Kept only for `pdd/models/__init__.py`; delete it once that imports from `pdd.ops` directly.
"""

from pdd.ops import selective_scan

__all__ = ["selective_scan"]
