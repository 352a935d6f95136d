"""Trial parameters from the environment, as Kubeflow Trainer's ``OptimizationJob`` will hand
them (KEP-3562: ``KUBEFLOW_TRAINER_OPT_<NAME>``), so the same image serves it unchanged.

``KUBEFLOW_TRAINER_OPT_LEARNING_RATE=0.01`` is ``--learning-rate=0.01``: the name lower-cased,
``_`` read as ``-``. A flag on the command line wins over its variable (aliases too: ``--lr``
and ``LEARNING_RATE`` are one setting). A name that is no flag of the trial is an input error
naming the variable.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

from trial_image.errors import InputError

PREFIX = "KUBEFLOW_TRAINER_OPT_"
_TRUE = ("1", "true", "yes", "on")


def with_environment(argv: list[str], parser: argparse.ArgumentParser,
                     environ: Mapping[str, str], per_block: re.Pattern[str]) -> list[str]:
    """``argv`` with a flag for each ``KUBEFLOW_TRAINER_OPT_*`` variable it does not set."""
    actions = parser._option_string_actions  # argparse's flag table
    given = set()
    for token in argv:
        if token.startswith("--"):
            flag = token.partition("=")[0].replace("_", "-")
            given.add(actions[flag].dest if flag in actions else flag)
    extra = []
    for key in sorted(k for k in environ if k.startswith(PREFIX)):
        name = key[len(PREFIX):].lower().replace("_", "-")
        flag = f"--{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not (
                flag in actions or per_block.match(flag)):
            raise InputError(f"${key}: the trial has no flag {flag} (KUBEFLOW_TRAINER_OPT_<NAME> "
                             "sets --<name>, '_' read as '-')")
        action = actions.get(flag)
        if (action.dest if action else flag) in given:
            continue
        value = environ[key]
        if action is not None and action.nargs == 0:  # a switch: set when the value is true
            extra += [flag] if value.strip().lower() in _TRUE else []
        else:
            extra.append(f"{flag}={value}")
    return [*argv, *extra]
