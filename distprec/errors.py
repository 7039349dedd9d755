"""The one exception type that the CLI turns into a single line and exit code 2."""


class InputError(Exception):
    """Bad user input: a file, a flag or a value the search cannot use."""


class SearchError(Exception):
    """The search could not finish (every worker lost, say): exit code 1, one line."""
