"""User code run in the driver (``--data-loader-script``, ``--check-func``): refused, not
crashed on.

Polygraphy runs such scripts as they are. A script that calls ``sys.exit`` would end
distprec with the script's own exit code (0 included: a silent "success"), one that raises
would print a traceback, one that hangs would never end. Each becomes one line naming the
file and the function, exit 2, before any search.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from distprec.errors import InputError, first_line

#: seconds user code may run in the driver (the loader, one check call, the import)
TIMEOUT_ENV = "DISTPREC_USER_TIMEOUT"
DEFAULT_TIMEOUT = 600.0


def user_timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise InputError(f"{TIMEOUT_ENV} must be a number of seconds") from None
    return value if value > 0 else DEFAULT_TIMEOUT


def guarded(where: str, what: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, with sys.exit, any exception and a hang made an InputError naming
    ``where`` (FILE.py:FUNC). A hung call is left behind in a daemon thread: the CLI then
    exits, which ends it."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = func(*args)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too, re-raised below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name=f"distprec-user-{what}")
    thread.start()
    limit = user_timeout()
    thread.join(limit)
    if thread.is_alive():
        raise InputError(f"{where}: {what} did not return within {limit:g} s "
                         f"(set {TIMEOUT_ENV} to wait longer)")
    exc = box.get("error")
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if isinstance(exc, SystemExit):
        raise InputError(f"{where}: {what} called sys.exit({exc.code!r})")
    if exc is not None:
        raise InputError(f"{where}: {what} raised {type(exc).__name__}: {first_line(exc)}")
    return box["value"]
