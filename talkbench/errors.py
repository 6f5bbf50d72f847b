"""The one exception type that the CLI turns into a clear one-line error."""


class TalkbenchError(Exception):
    """Bad input or a failed precondition, with a message that names the file or option."""


class DataError(TalkbenchError):
    """A dataset file is missing, unreadable or inconsistent."""


class ConfigError(TalkbenchError):
    """An unknown name, preset, override key or an invalid value."""
