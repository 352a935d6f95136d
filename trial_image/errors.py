"""Exit codes of the trial, and the exceptions that map to them.

Katib only sees the exit code and the printed lines, so every expected failure has its own code
and a one-line reason instead of a stack trace.
"""


class TrialError(Exception):
    """An expected failure: printed as one line, exits with ``exit_code``."""

    exit_code = 1


class InputError(TrialError):
    """Bad parameters, an architecture the input cannot carry, or an unreadable dataset."""

    exit_code = 2


class TrainingFailed(TrialError):
    """Training diverged (NaN loss); the candidate is bad, not the input."""

    exit_code = 3


class TrackingError(TrialError):
    """MLflow could not be reached, or the run or model could not be stored."""

    exit_code = 4
