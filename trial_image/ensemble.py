"""A champion made of several final models (Neural Ensemble Search, Zaidi et al. 2021): one
Keras model whose output is the weighted mean of its members' (class probabilities, or
numbers), served exactly as a single model is. Final training chooses the members
(:mod:`pipeline.finalize.ensemble`: Caruana's greedy selection on the validation outputs each
selection run logs, ``trial_run.VALIDATION_OUTPUTS``), then runs ``python -m trial_image ...
--ensemble-of RUN:COUNT,...``: the members' final models are loaded from MLflow, combined,
measured on the test split and stored like any final model.

A series' members may read windows of different lengths: the ensemble reads the longest and
hands each member its last values.
"""

from __future__ import annotations

import re
from typing import Any

from trial_image.errors import InputError

MAX_MEMBERS = 16
_MEMBER = re.compile(r"^([0-9a-f]{32}):([1-9][0-9]?)$")  # an MLflow run id and its count


def parse(text: str) -> list[tuple[str, int]]:
    """``--ensemble-of RUN:COUNT,...``: each member's final run and how often the greedy
    selection chose it (its weight is its share of the counts)."""
    members = []
    for part in text.split(",")[:MAX_MEMBERS + 1]:
        match = _MEMBER.match(part.strip())
        if match is None:
            raise InputError(f"--ensemble-of: {part[:80]!r} is not RUN_ID:COUNT (an MLflow run "
                             "id, 32 hexadecimal digits, and a count from 1 to 99)")
        members.append((match[1], int(match[2])))
    runs = [run for run, _ in members]
    if not 2 <= len(members) <= MAX_MEMBERS or len(set(runs)) < len(runs):
        raise InputError(f"--ensemble-of: 2 to {MAX_MEMBERS} different runs, got "
                         f"{len(members)}{' (one repeated)' if len(set(runs)) < len(runs) else ''}")
    return members


def combine(members: list[Any], weights: list[float], name: str) -> Any:
    """One model averaging ``members`` (Keras models of one family and task) with ``weights``
    (summing to 1); its inputs are the first member's (a series': the longest window)."""
    import keras
    from keras import layers

    longest = max(members, key=lambda m: _length(m.input))
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name), longest.input)
    outputs = []
    for index, (member, weight) in enumerate(zip(members, weights, strict=True)):
        member.name = f"member_{index}"  # several candidates may share a name
        seen = inputs
        steps = _length(member.input)
        if not isinstance(inputs, dict) and steps < _length(inputs):  # its last values
            seen = layers.Reshape((steps,), name=f"member_{index}_window")(layers.Cropping1D(
                (_length(inputs) - steps, 0), name=f"member_{index}_last")(
                layers.Reshape((_length(inputs), 1), name=f"member_{index}_steps")(inputs)))
        outputs.append(layers.Rescaling(weight, name=f"member_{index}_weight")(member(seen)))
    return keras.Model(inputs, layers.Add(name="ensemble_mean")(outputs), name=name)


def _length(inputs: Any) -> int:
    """A window's length (a series); 0 for any other input."""
    if isinstance(inputs, dict) or len(inputs.shape) != 2:
        return 0
    return int(inputs.shape[1])


def run(args: Any, data: Any) -> int:
    """The trial CLI with ``--ensemble-of``: its members' final models combined, measured on
    ``data``'s test split and stored as this final run's model."""
    import dataclasses
    import hashlib
    import warnings

    from trial_image import tags
    from trial_image.data import DataRequest, Window
    from trial_image.mlflow_connection import retry
    from trial_image.serving import load_keras
    from trial_image.tasks import TASKS
    from trial_image.trial_run import RunOptions, TrialRun, prepare_tensorflow

    members = parse(args.ensemble_of)
    if args.role != "final" or data.test is None:
        raise InputError("--ensemble-of makes a final model: it needs --role final and the "
                         "test split (no --skip-test)")
    prepare_tensorflow(args.seed)
    with TrialRun(RunOptions.of(args), data) as trial:
        tracker = trial.tracker
        models, described = [], []
        for run_id, count in members:
            stored = retry(lambda r=run_id: tracker.client.get_run(r), f"reading run {run_id}",
                           args.mlflow_retry_seconds)
            if stored.data.tags.get(tags.FAMILY, "image") != data.family.name or \
                    stored.data.tags.get(tags.TASK, "classification") != data.task:
                raise InputError(f"--ensemble-of: run {run_id} is not a {data.family} "
                                 f"{data.task} model")
            models.append(retry(lambda r=run_id: load_keras(tracker.mlflow, f"runs:/{r}/model",
                                                            data.family),
                                f"loading the model of run {run_id}", args.mlflow_retry_seconds))
            described.append({"run": run_id, "trial": stored.data.tags.get(tags.SOURCE_TRIAL),
                              "candidate_id": stored.data.tags.get(tags.CANDIDATE_ID),
                              "weight": count / sum(c for _, c in members)})
        longest = max(_length(m.input) for m in models)
        if data.family.windowed and longest != data.input_shape[0]:  # the longest window
            trial.data = data = dataclasses.replace(
                DataRequest.of(args), window=Window(longest, args.horizon)).load().merged()
        identity = hashlib.sha1(",".join(sorted(r for r, _ in members)).encode()).hexdigest()
        with warnings.catch_warnings():  # a table's inputs are keyed by column (builder)
            warnings.filterwarnings("ignore", "When providing `inputs` as a dict")
            model = combine(models, [m["weight"] for m in described],
                            f"ensemble_{identity[:12]}")
        run_tags = {tags.FRONTEND: "ensemble", tags.CANDIDATE_ID: f"ensemble-{identity[:12]}",
                    tags.ROLE: "final", tags.TASK: data.task, tags.FAMILY: data.family.name}
        if args.source_trial:
            run_tags[tags.SOURCE_TRIAL] = args.source_trial
        raw = {k: str(v) for k, v in vars(args).items() if v is not None and
               k != "metrics_file"}
        if data.family.windowed:  # the window it reads: compression loads its data by these
            raw["lookback"] = str(longest)
        trial.start(run_tags, {**raw, "members": len(members),
                               "parameter_count": model.count_params()},
                    {"trial_parameters.json": raw})
        trial.record_ensemble(model, TASKS[data.task], described)
    return 0
