"""The errors a user sees, each printed as one line (cli.fail) with no traceback.

    DataError        a mistake in the flags, the data or a file handed in: exit status 2
    DownloadFailed   a download that did not bring its file (the network, the server): exit status 1
    Diverged         training's loss became NaN or infinite: exit status 1
"""


class DataError(Exception):
    """A problem with the user's data or flags: printed as one line, no traceback."""


class DownloadFailed(DataError):
    """The download did not bring the file (the network, the server): not the user's mistake, exit status 1."""


class Diverged(Exception):
    """The loss became NaN or infinite."""
