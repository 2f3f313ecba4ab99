"""The one exception type for bad user input.

The CLI prints ``error: <message>`` on one line and exits with status 2, with no traceback.
Messages name the file or value, say what is wrong and what to do.
"""


class UserError(Exception):
    """Bad input from the user (file, value or config). The message is shown as is."""
