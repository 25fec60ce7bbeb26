"""One error hierarchy for raylift.

Every error a user can cause derives from :class:`RayliftError`; the CLI turns
it into one line on stderr and a non-zero exit code that scripts can rely on:

* 1: something failed (a run, a job, an unexpected error);
* 2: bad input (a spec, a flag or argument, an unknown job id); nothing was started;
* 3: a job or run was stopped before it finished;
* 4: the cluster could not be reached or refused the credentials.
"""

from __future__ import annotations


class RayliftError(Exception):
    """Base class of every error raylift raises on purpose."""

    exit_code: int = 1


class SpecError(RayliftError):
    """A spec file is missing, malformed or invalid. Nothing was started."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"

    def with_file(self, file: str) -> SpecError:
        """The same error, attributed to ``file`` (when it had no file yet)."""
        if self.file:
            return self
        return SpecError(self.message, file=file, key=self.key, line=self.line, column=self.column)


class UsageError(RayliftError):
    """A bad command-line flag or argument (the spec file is not at fault). Nothing was started."""

    exit_code = 2

    def __init__(self, message: str, *, option: str | None = None) -> None:
        self.message = message
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)


class RegistryError(RayliftError):
    """An unknown model or data set name, or a bad import path."""

    exit_code = 2


class DataError(RayliftError):
    """A data source could not be read or is unusable (empty, wrong columns...)."""

    exit_code = 2


class StorageError(RayliftError):
    """The storage root is unusable, or a run there conflicts with the request."""

    exit_code = 2


class ClusterError(RayliftError):
    """Ray could not be started or reached."""

    exit_code = 4


class AuthError(ClusterError):
    """No Ray auth token was found, or the cluster refused it."""


class JobError(RayliftError):
    """A Ray job failed, or the Jobs API refused a request."""


class UnknownJobError(JobError):
    """No job with that id on the cluster."""

    exit_code = 2


class JobStopped(JobError):
    """A job or run was stopped before it finished."""

    exit_code = 3


class CheckpointError(RayliftError):
    """A checkpoint is missing, incomplete or fails verification."""


class ExportError(RayliftError):
    """An exported model is missing, incomplete or fails to load."""


class TrainingError(RayliftError):
    """A training run failed."""


class QuantizationRefused(RayliftError):
    """int8 quantization loses more accuracy than the spec allows; nothing was deployed."""

    exit_code = 2


class ServeError(RayliftError):
    """A Serve application failed to deploy or to run."""


class UnknownApplication(ServeError):
    """No Serve application of that name on the cluster."""

    exit_code = 2


class RequestError(RayliftError):
    """A client error: ``status`` (4xx) and a message for the JSON ``{"error": ...}``.

    Raised inside a serving replica and answered over HTTP; never an exit code.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": str(self)}
