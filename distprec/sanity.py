"""Data refused before a search: values no verdict can be made on (issue 13).

NaN or Inf in the inputs makes every plan fail ("all-high fails"), and in the golden
outputs every comparison; zero-sized dimensions make every plan "pass" on no data.
"""

from __future__ import annotations

import numpy as np

from distprec.errors import InputError


def refuse_nonfinite(feeds, origin: str, what: str) -> None:
    """One line naming the file, the array and how many values are NaN or Inf."""
    for name in (feeds[0] if feeds else {}):
        bad = sum(int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                  for a in (np.asarray(f[name]) for f in feeds)
                  if np.issubdtype(a.dtype, np.floating))
        if bad:
            raise InputError(f"{origin}: {what} {name!r} holds {bad} NaN/Inf value(s); no "
                             "verdict can be made on them")


def refuse_empty(feeds, origin: str) -> None:
    for name, a in (feeds[0] if feeds else {}).items():
        if np.size(a) == 0:
            raise InputError(f"{origin}: input {name!r} has a zero-sized dimension "
                             f"{tuple(np.shape(a))}: a search on no data proves nothing")
