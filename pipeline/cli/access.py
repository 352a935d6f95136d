"""``nasflow mlflow grant USER``: the least privilege nasflow needs on a basic-auth MLflow server.

Run as an MLflow admin (``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` of the admin). What nasflow's
identity (trials and the pipeline) does, and the permission it takes (docs/mlflow.md):

* experiments it creates itself: MLflow gives the creator MANAGE, nothing to grant;
* an experiment the team created: EDIT (runs, metrics, models, tags; no deletion, no sharing);
* a registered model the team created, and its compressed variants' ``<model>-variants``:
  MANAGE, because promotion moves aliases off versions (``champion`` → ``challenger``, a deletion
  in MLflow's permission model) and deletes the duplicate version two racing promoters can
  create; a model nasflow creates is its own.

A reviewer (``--reviewer``) reads runs and models and changes nothing: READ on the experiments
and on the models and their variants' models.

A user that does not exist is created with the password in ``NASFLOW_MLFLOW_NEW_PASSWORD`` (an
environment variable: a flag would show in ``ps`` and the shell's history).
"""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

from pipeline.cli.common import UsageError, mlflow_retry_flag, tracking_uri

PASSWORD_VARIABLE = "NASFLOW_MLFLOW_NEW_PASSWORD"
EXPERIMENT_PERMISSION = "EDIT"
MODEL_PERMISSION = "MANAGE"
REVIEWER_PERMISSION = "READ"


def cmd_grant(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    uri = tracking_uri(args)
    if not uri.startswith(("http://", "https://")):
        raise UsageError(f"--tracking-uri {uri!r}: permissions live on an MLflow server "
                         "(http:// or https://) started with --app-name basic-auth")
    try:
        if not urlsplit(uri).hostname:
            raise ValueError("no host")
    except ValueError as exc:
        raise UsageError(f"--tracking-uri {uri!r}: not a URL ({exc})") from None
    if not args.user.strip() or args.user != args.user.strip():
        raise UsageError(f"user {args.user!r}: a user name is not empty and has no spaces "
                         "around it")
    experiment_permission, model_permission = (
        (REVIEWER_PERMISSION,) * 2 if args.reviewer else (EXPERIMENT_PERMISSION, MODEL_PERMISSION))
    from mlflow import MlflowClient

    with warnings.catch_warnings():  # its package imports MLflow's server app, which warns
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        from mlflow.server.auth.client import AuthServiceClient

    from pipeline.promotion.registry import variants_of
    from trial_image.contract import fail_fast_http, or_none, retry

    fail_fast_http()
    admin, client = AuthServiceClient(uri), MlflowClient(uri)

    def call(action: Any, what: str) -> Any:
        return retry(action, what, args.mlflow_retry_seconds)

    def find(action: Any, what: str) -> Any:
        """What ``action`` reads, or None where MLflow says it does not exist."""
        return call(lambda: or_none(action), what)

    created = find(lambda: admin.get_user(args.user), f"reading user {args.user!r}") is None
    if created:
        password = os.environ.get(PASSWORD_VARIABLE)
        if not password:
            raise UsageError(f"user {args.user!r} does not exist: set {PASSWORD_VARIABLE} to "
                             "create it")
        call(lambda: admin.create_user(args.user, password), f"creating user {args.user!r}")
    lines = [f"user {args.user!r}: {'created' if created else 'exists'}"]
    for name in args.experiment:
        found = call(lambda n=name: client.get_experiment_by_name(n), f"reading experiment {name}")
        exp_id = found.experiment_id if found else call(
            lambda n=name: client.create_experiment(n), f"creating experiment {name}")
        call(lambda e=exp_id: admin.grant_user_permission(args.user, "experiment", e,
                                                          experiment_permission),
             f"granting {experiment_permission} on experiment {name}")
        lines.append(f"experiment {name!r} (id {exp_id}): {experiment_permission}")
    for name in [m for model in args.model for m in (model, variants_of(model))]:
        if find(lambda n=name: client.get_registered_model(n), f"reading model {name}") is None:
            call(lambda n=name: client.create_registered_model(n), f"creating model {name}")
        call(lambda n=name: admin.grant_user_permission(args.user, "registered_model", n,
                                                        model_permission),
             f"granting {model_permission} on registered model {name}")
        lines.append(f"registered model {name!r}: {model_permission}")
    print("\n".join(lines))
    return 0


def add_parser(sub: Any) -> None:
    group = sub.add_parser("mlflow", help="MLflow server administration for nasflow")
    actions = group.add_subparsers(dest="mlflow_command", required=True)
    p = actions.add_parser("grant", help="give a user the least privilege nasflow needs (run "
                           "as an MLflow admin)", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("user")
    p.add_argument("--experiment", action="append", default=[], metavar="NAME",
                   help="a team-created experiment nasflow logs into (EDIT); repeatable")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="a team-created registered model nasflow promotes in, and its "
                   "<model>-variants (MANAGE); repeatable")
    p.add_argument("--reviewer", action="store_true",
                   help="a reviewer: READ on the experiments and models (and their variants' "
                   "models), nothing to change")
    p.add_argument("--tracking-uri", help="the MLflow server (default $MLFLOW_TRACKING_URI)")
    mlflow_retry_flag(p)
    p.set_defaults(func=cmd_grant)
