"""Final training's errors, importable without loading the stage (the CLI maps them to exit
codes)."""


class NoCandidates(Exception):
    """Nothing to finalize: the search has no trial with an objective value (exit code 2)."""


class FinalizeError(Exception):
    """Final training cannot run, or a run of it failed; the message says which and why
    (exit code 1)."""
