"""Trial parameters from the environment, as Kubeflow Trainer's ``OptimizationJob`` will hand
them (KEP-3562: ``KUBEFLOW_TRAINER_OPT_<NAME>``), so the same image serves it unchanged.

``KUBEFLOW_TRAINER_OPT_LEARNING_RATE=0.01`` is ``--learning-rate=0.01``: the name lower-cased,
``_`` read as ``-``. A flag on the command line wins over its variable (aliases too: ``--lr``
and ``LEARNING_RATE`` are one setting). A name that is no flag of the trial, or a value its flag
refuses, is an input error naming the variable.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

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
    extra, origins = [], {}
    for key in sorted(k for k in environ if k.startswith(PREFIX)):
        name = key[len(PREFIX):].lower().replace("_", "-")
        flag = f"--{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not (
                flag in actions or per_block.match(flag)) or \
                isinstance(actions.get(flag), argparse._HelpAction):  # a parameter, not --help
            raise InputError(f"${key}: the trial has no flag {flag} (KUBEFLOW_TRAINER_OPT_<NAME> "
                             "sets --<name>, '_' read as '-')")
        action = actions.get(flag)
        if (action.dest if action else flag) in given:
            continue
        value = environ[key]
        origins[flag] = key
        if action is not None and action.nargs == 0:  # a switch: set when the value is true
            extra += [flag] if value.strip().lower() in _TRUE else []
        else:
            extra.append(f"{flag}={value}")
    if origins:
        _name_variables_in_errors(parser, origins)
    return [*argv, *extra]


def _name_variables_in_errors(parser: argparse.ArgumentParser, origins: dict[str, str]) -> None:
    """argparse's error about a flag set from a variable names the variable too."""
    error = parser.error

    def named(message: str) -> Any:
        flags = [flag for flag in origins if re.search(re.escape(flag) + r"\b", message)]
        return error(message + "".join(f" (from ${origins[f]})" for f in flags[:1]))

    parser.error = named  # type: ignore[method-assign]
