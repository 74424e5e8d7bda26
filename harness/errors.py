"""Error types the CLI turns into one-line messages and exit codes.

Exit codes are part of the user contract (nightly jobs branch on them), so every failure a user can
cause or meet is one of these, never a bare exception.
"""


class HilError(Exception):
    """A failure with a message meant for the user."""

    exit_code = 1


class ConfigError(HilError):
    """Bad inventory/profile/CLI input: the user must fix a file or an argument."""

    exit_code = 3


class ModelError(HilError):
    """A model file is missing, corrupt or unsupported."""

    exit_code = 3


class NotApplicable(ModelError):
    """A compression step cannot apply to this model's structure (nothing a depth multiplier can drop,
    no channel group to prune, two inputs): a sweep lists the candidate as not applicable and goes on,
    unlike a usage error, which it reports as a failure (exit 3)."""


class InfraError(HilError):
    """The lab failed (device unreachable, transport dropped, runner crashed), not the model."""

    exit_code = 2


class StorageError(InfraError):
    """The results store cannot be read or written (a full disk, a write-protected file or folder, a
    lost database server): the lab's failure, not the user's input. `hil run` keeps a result it cannot
    store in the spool (harness/store/spool.py) instead of losing it."""


EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_INFRA = 2
EXIT_USAGE = 3
