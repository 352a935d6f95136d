"""Katib's ``api.v1.beta1.Suggestion`` service for nasflow's algorithms, and its health check.

``GetSuggestions`` rebuilds the algorithm from the request on every call: the trials Katib sends
are replayed in suggestion order (each carries its index as the label ``INDEX_LABEL``), each from
the finished trials it could see, exactly as the embedded engine's ``--resume`` does; then the
``current_request_number`` next suggestions are proposed the way the engine proposes them
(trial ``k`` from the trials ``0..k-parallel`` that have finished). Trials are named as the
engine names them. An exhausted search answers with no assignments, as Katib's own services do;
invalid settings are ``INVALID_ARGUMENT`` naming the field, so the Experiment fails with that
reason. One difference from the engine: Katib leaves trials whose metrics were unavailable out
of the request, so the algorithm never hears of them, where the engine tells it they failed
(Optuna's nsga2 then samples from a study without that failed trial).
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pipeline.katib.status import FINISHED
from pipeline.service.api import api_pb2, api_pb2_grpc
from pipeline.service.convert import (
    INDEX_LABEL,
    MAX_TRIALS,
    BadRequest,
    experiment_of,
    results_of,
)
from pipeline.service.limits import Limits
from pipeline.suggestion import create
from pipeline.suggestion.base import SearchContext, TrialResult, trial_name
from pipeline.suggestion.registry import algorithms
from pipeline.validation.algorithm import check_algorithm
from pipeline.validation.space import check_space

PORT = 6789  # Katib's DefaultSuggestionPort
# What one request may ask for (INVALID_ARGUMENT past these) and how long it may take:
MAX_REQUEST = 1_000  # suggestions in one request (Katib asks for parallelTrialCount at most)
MAX_MESSAGE = 16 * 1024 * 1024  # bytes of one request: Katib sends every trial it has
HEALTH_SERVICE = "manager.v1beta1.Suggestion"  # what Katib's gRPC probes ask for


# Katib's pbt service keeps its trials' checkpoints on a claim it mounts into the suggestion
# pod; nasflow's pbt runs on the embedded engine only.
NOT_SERVED = ("pbt",)


def served() -> list[str]:
    """Every algorithm the embedded engine runs, Katib's and nasflow's own, but pbt: one image
    in place of Katib's Python suggestion images (manifests/suggestion)."""
    return [name for name, a in algorithms().items() if a.suggestion and name not in NOT_SERVED]


class SuggestionService(api_pb2_grpc.SuggestionServicer):
    """Every request does bounded work: at most ``MAX_TRIALS`` replayed and ``MAX_REQUEST``
    proposed, within :class:`pipeline.service.limits.Limits` (``busy_limit`` at once, the
    client's deadline)."""

    def __init__(self, busy_limit: int) -> None:
        self.limits = Limits(busy_limit)

    def ValidateAlgorithmSettings(self, request: Any, context: Any) -> Any:
        experiment = experiment_of(request.experiment)
        problems = self._problems(experiment)
        if problems:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        return api_pb2.ValidateAlgorithmSettingsReply()

    @staticmethod
    def _problems(experiment: Any) -> list[str]:
        name = experiment.spec.algorithm.algorithm_name
        if name not in served():
            return [f"spec.algorithm.algorithmName: nasflow's suggestion service serves "
                    f"{', '.join(served())}, not {name!r}"]
        space = check_space(experiment.spec)
        return [str(p) for p in check_algorithm(experiment.spec, space_valid=not space) + space]

    def GetSuggestions(self, request: Any, context: Any) -> Any:
        with self.limits.request(context, "suggestion") as left:
            return self._suggest(request, context, left)

    def _suggest(self, request: Any, context: Any, in_time: Callable[[], float]) -> Any:
        try:
            experiment = experiment_of(request.experiment)
            known = results_of(request.trials, experiment)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        problems = self._problems(experiment)
        if request.current_request_number > MAX_REQUEST:
            problems.append(f"current_request_number: {request.current_request_number} is more "
                            f"than the {MAX_REQUEST} suggestions one request may ask for")
        if request.total_request_number > MAX_TRIALS:
            problems.append(f"total_request_number: {request.total_request_number} is more than "
                            f"the {MAX_TRIALS:,} trials nasflow's service replays")
        if problems:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        spec = experiment.spec
        settings = {s.name: str(s.value) for s in spec.algorithm.algorithm_settings or []}
        seed = int(settings.get("random_state", 0))
        algorithm = create(SearchContext(experiment, settings, seed))
        parallel = spec.parallel_trial_count or 3
        first = max(request.total_request_number - request.current_request_number,
                    max(known, default=-1) + 1)
        finished = {i: r for i, r in known.items() if r.status in FINISHED}

        def seen(upto: int) -> list[TrialResult]:
            return [finished[i] for i in sorted(finished) if i < upto]

        for index in range(first):  # replay: the state the search had
            in_time()
            if index in known:
                try:
                    algorithm.replay(index, known[index].assignments, seen, parallel)
                except (KeyError, ValueError, TypeError, IndexError) as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, (
                        f"trials[{INDEX_LABEL}={index}].parameterAssignments: not an assignment "
                        f"of this search space ({type(exc).__name__}: {str(exc)[:200]})"))
            else:
                algorithm.propose_in_turn(index, seen, parallel)
        reply = api_pb2.GetSuggestionsReply()
        proposed = []
        for index in range(first, first + request.current_request_number):
            in_time()
            assignments = algorithm.propose_in_turn(index, seen, parallel)
            if not isinstance(assignments, dict):
                return api_pb2.GetSuggestionsReply()  # exhausted: Katib's services answer empty
            proposed.append((index, assignments))
        for index, assignments in proposed:
            reply.parameter_assignments.add(
                assignments=[api_pb2.ParameterAssignment(name=k, value=v)
                             for k, v in assignments.items()],
                trial_name=trial_name(experiment.metadata.name, seed, index),
                labels={INDEX_LABEL: str(index)})
        return reply


def start(host: str = "0.0.0.0", port: int = PORT, workers: int = 4, serve: str = "suggestion",
          custom_objects: Any = None, namespace: str | None = None) -> tuple[Any, int]:
    """The server, started: the Suggestion service (``serve="early-stopping"``: the
    EarlyStopping service, whose Trial updates go through ``custom_objects``, default the pod's
    in-cluster API) and the standard gRPC health service (SERVING for ``""`` and Katib's probe
    names). Returns (server, bound port)."""
    from pipeline.service import early_stopping

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    if serve == "suggestion":
        api_pb2_grpc.add_SuggestionServicer_to_server(SuggestionService(max(1, workers - 1)),
                                                      server)
        names = (HEALTH_SERVICE, "api.v1.beta1.Suggestion")
    else:
        early_stopping.add_to(server, custom_objects, namespace, max(1, workers - 1))
        names = ("manager.v1beta1.EarlyStopping", "api.v1.beta1.EarlyStopping")
    checks = health.HealthServicer()
    for service in ("", *names):
        checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    from pipeline.service import early_stopping

    parser = argparse.ArgumentParser(prog="python -m pipeline.service", description=__doc__)
    parser.add_argument("--serve", choices=("suggestion", "early-stopping"), default="suggestion",
                        help="Katib's Suggestion service (port 6789) or its EarlyStopping "
                        "service (port 6788), for nasflow's algorithms")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    algorithms()  # load the declarations before the first request
    default, names = ((PORT, served()) if args.serve == "suggestion"
                      else (early_stopping.PORT, early_stopping.served()))
    server, port = start(args.host, args.port or default, serve=args.serve)
    print(f"nasflow {args.serve} service ({', '.join(names)}) on {args.host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(5))
    server.wait_for_termination()
    return 0
