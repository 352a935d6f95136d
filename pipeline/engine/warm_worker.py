"""A warm interpreter for ``python -m trial_image`` trials: TensorFlow, Keras and MLflow are
imported once per worker instead of once per trial (~4 s of CPU each on this machine).

The engine starts the worker in its own session and sends one JSON line per trial on stdin:
``{"argv": [...], "env": {...}, "cwd": "...", "log": "..."}``. For that trial the worker replaces
its environment and working directory, points file descriptors 1 and 2 at the trial's log (as a
fresh process would have them), runs ``trial_image.cli.main`` and answers ``{"code": N}`` on its
protocol pipe. Arguments still arrive as an argv list; nothing passes through a shell. A trial
that is stopped (SIGTERM) ends the worker with it, as a process would end; the worker also ends
with the engine (the kernel sends it SIGTERM when the engine dies, as it does a trial whose
parent dies: the trial under way ends its MLflow run KILLED).
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _run_one(request: dict) -> int:
    from trial_image.cli import main

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        return main(request["argv"])
    except SystemExit as exc:  # argparse errors exit 2, as they would in a fresh process
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a crash is this trial's failure, reported as exit 1
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(log)
        import keras

        keras.backend.clear_session(free_memory=True)


def serve() -> None:
    from trial_image.termination import end_with_parent

    end_with_parent()
    protocol = os.fdopen(os.dup(1), "w")  # stdout is the protocol pipe; fd 1 gets redirected
    import keras  # noqa: F401 - the point of the worker: import once
    import mlflow  # noqa: F401
    import tensorflow  # noqa: F401

    import trial_image.cli  # noqa: F401

    protocol.write("ready\n")
    protocol.flush()
    for line in sys.stdin:
        code = _run_one(json.loads(line))
        protocol.write(json.dumps({"code": code}) + "\n")
        protocol.flush()
        if code == 143:  # stopped: die like the process the trial stands for
            os._exit(143)


if __name__ == "__main__":
    serve()
