"""The exceptions the CLI turns into one line (exit 2 and 1), and how to shorten others."""


class InputError(Exception):
    """Bad user input: a file, a flag or a value the search cannot use."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, for one-line messages; its type when it has no text."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def cause(exc: BaseException, limit: int = 300) -> str:
    """The last line naming an error: Ray wraps a worker's traceback in its own message."""
    lines = str(exc).strip().splitlines()
    named = [line for line in lines if "Error" in line] or lines
    return named[-1][:limit] if named else type(exc).__name__


class SearchError(Exception):
    """The search could not finish (every worker lost, say): exit code 1, one line."""
