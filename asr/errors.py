"""The one exception type for bad user input.

The CLI prints ``error: <message>`` on one line and exits with status 2, with no traceback.
Messages name the file or value, say what is wrong and what to do.
"""


class UserError(Exception):
    """Bad input from the user (file, value or config). The message is shown as is."""


def first_line(e: BaseException) -> str:
    """What a one-line error quotes of ``e``: the first non-empty line of its message (libraries raise
    messages of many lines), else the name of its type."""
    return next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
