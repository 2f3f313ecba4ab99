"""The one exception type for bad user input, and the one-line text of an operating-system error.

The CLI prints ``error: <message>`` on one line and exits with status 2, with no traceback.
Messages name the file or value, say what is wrong and what to do.
"""

import errno


class UserError(Exception):
    """Bad input from the user (file, value or config). The message is shown as is."""


# what to do about the operating system's refusals that bad output paths and full disks give
_OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space on that disk or write somewhere else",
    errno.EDQUOT: "free some space on that disk or write somewhere else",
    errno.EACCES: "choose a path you may write to",
    errno.EPERM: "choose a path you may write to",
    errno.EROFS: "choose a path on a writable disk",
    errno.ENOTDIR: "a file stands where the path needs a folder; choose another path",
    errno.EEXIST: "a file stands where a folder is to be made; choose another path",
    errno.EISDIR: "a folder stands where a file is to be written; choose another path",
}


def os_error_line(e: OSError) -> str:
    """One line for an OSError: the path, the system's reason and, for the common ones, what to do."""
    where = f"{e.filename}: " if e.filename is not None else ""
    fix = _OS_ERROR_FIXES.get(e.errno)
    return f"{where}{e.strerror or first_line(e)}{f'; {fix}' if fix else ''}"


def first_line(e: BaseException) -> str:
    """What a one-line error quotes of ``e``: the first non-empty line of its message (libraries raise
    messages of many lines), else the name of its type."""
    return next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
