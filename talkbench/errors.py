"""The one exception type that the CLI turns into a clear one-line error."""


class TalkbenchError(Exception):
    """Bad input or a failed precondition, with a message that names the file or option."""


class DataError(TalkbenchError):
    """A dataset file is missing, unreadable or inconsistent."""


class ConfigError(TalkbenchError):
    """An unknown name, preset, override key or an invalid value."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a resumable checkpoint.

    A ``KeyboardInterrupt`` so that code which does not know it still stops; the run's owner marks
    the MLflow run KILLED and prints how to resume.
    """

    run_id: str | None = None  # the interrupted MLflow run, set by the run's owner (pipeline.run)

    def __init__(self, signal_name: str, checkpoint: str | None, epoch: int | None = None):
        self.signal_name = signal_name
        self.checkpoint = checkpoint
        self.epoch = epoch
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint saved"
        super().__init__(f"interrupted by {signal_name}; {where}")
