"""The one table shape for datasets (and hub models): AstroHub's metadata columns plus location.

``%dataset list`` (registered datasets) and the hub's ``search_models``/``search_datasets``
(``%model list [--datasets]``) all return DataFrames with exactly these columns, so one listing
can be concatenated with or compared to another.
"""
from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["name", "version", "owner", "domain", "title", "type", "visibility", "publication_date", "uuid",
           "description", "location"]


def frame(rows: Iterable[dict[str, Any]]) -> "pd.DataFrame":
    """Rows (dicts; missing keys become "") as a DataFrame with ``COLUMNS``, in that order."""
    import pandas as pd

    return pd.DataFrame([{c: r.get(c, "") for c in COLUMNS} for r in rows], columns=COLUMNS)


def date_of(timestamp: float) -> str:
    """A Unix time as the ISO date (UTC) the catalog shows as ``publication_date``."""
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).date().isoformat()
