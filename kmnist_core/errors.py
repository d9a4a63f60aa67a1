"""The project's error types; each message is one actionable line for the user."""


class KmnistError(Exception):
    """Base class of every error the project raises on purpose."""


class UsageError(KmnistError):
    """Bad command-line usage: the message ends with "(see --help)"."""


class ConfigError(KmnistError, ValueError):
    """A training configuration value is invalid; the message names field, value and what is allowed."""


class DataError(KmnistError):
    """The dataset cannot be loaded; the message names the file and what to do."""


class InputError(KmnistError, ValueError):
    """A drawing or uploaded image cannot be used; the message says why."""


class StoreError(KmnistError):
    """The run store cannot be read or written; the message names the path."""


class RunNotFoundError(KmnistError, LookupError):
    """A run id is malformed or names no run in the store."""


class RunDataMismatchError(KmnistError, ValueError):
    """A run was trained on other data than the loaded dataset, so its results cannot be matched to its images."""
