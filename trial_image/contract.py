"""The trial image's contract with the pipeline: everything ``pipeline/`` may use from it.

The pipeline runs trials as processes (locally) or containers (on Katib) and talks to them only
through their flags, their metrics output and MLflow; what it must agree with them on is here:
the flag values it passes (schedules, augmentations, compression variants), DARTS' primitives
and Katib's DARTS defaults (the engine's ``darts`` suggestion emits them), the MLflow tag names,
what each task is measured by, the environment a trial of several workers reads, the tracking
defaults and helpers both sides use against the same server (and how a model URI reads), and
where a pod reads its namespace.
``tests/test_architecture.py`` checks that nothing else in ``pipeline/`` imports
``trial_image`` (except the warm worker, which runs the trial CLI in-process by design).
"""

from __future__ import annotations

from trial_image import tags
from trial_image.compress.run import DEFAULT_VARIANTS as COMPRESSION_VARIANTS
from trial_image.compress.run import variant_names
from trial_image.darts.settings import KATIB_DEFAULTS as DARTS_DEFAULTS
from trial_image.distributed import HOSTS as WORKER_HOSTS_ENV
from trial_image.distributed import MAX_NODES
from trial_image.distributed import NUM_NODES as NUM_NODES_ENV
from trial_image.distributed import RANK as RANK_ENV
from trial_image.errors import TrackingError, TrialError
from trial_image.families import family_of
from trial_image.frontends.genotype import PRIMITIVES as DARTS_PRIMITIVES
from trial_image.mlflow_connection import (
    access_problem,
    default_tracking_uri,
    fail_fast_http,
    is_outage,
    open_experiment,
    or_none,
    parse_model_uri,
    racing,
    retry,
    version_or_none,
)
from trial_image.numbers import number
from trial_image.paths import writable_folder
from trial_image.spec import AUGMENTATIONS, LR_SCHEDULES
from trial_image.tasks import TASKS, Task, task_of
from trial_image.trial_run import SERVICE_ACCOUNT_NAMESPACE, VALIDATION_OUTPUTS

__all__ = [
    "AUGMENTATIONS",
    "COMPRESSION_VARIANTS",
    "DARTS_DEFAULTS",
    "DARTS_PRIMITIVES",
    "LR_SCHEDULES",
    "MAX_NODES",
    "NUM_NODES_ENV",
    "RANK_ENV",
    "SERVICE_ACCOUNT_NAMESPACE",
    "TASKS",
    "VALIDATION_OUTPUTS",
    "WORKER_HOSTS_ENV",
    "Task",
    "TrackingError",
    "TrialError",
    "access_problem",
    "default_tracking_uri",
    "fail_fast_http",
    "family_of",
    "is_outage",
    "number",
    "open_experiment",
    "or_none",
    "parse_model_uri",
    "racing",
    "retry",
    "tags",
    "task_of",
    "variant_names",
    "version_or_none",
    "writable_folder",
]
