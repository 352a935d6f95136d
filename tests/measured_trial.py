"""``python -m tests.measured_trial ARGS``: the trial image's entry point with ARGS, then one JSON
line on stderr: seconds from start to the end of the first training step, training images per
second after the first 10 steps of the first epoch, and the peak resident memory of this process
(VmHWM: ``ru_maxrss`` carries a parent's peak across fork+exec)."""

from __future__ import annotations

import json
import sys
import time

START = time.perf_counter()


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    import keras

    from trial_image.cli import main as trial

    steps: list[float] = []  # end of each step of the first epoch, seconds since START

    class FirstEpochSteps(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 0:
                steps.append(time.perf_counter() - START)

    fit = keras.Model.fit

    def measured_fit(self, *args, callbacks=None, **kwargs):
        return fit(self, *args, callbacks=[*(callbacks or []), FirstEpochSteps()], **kwargs)

    keras.Model.fit = measured_fit
    code = trial(sys.argv[1:])
    batch = int(sys.argv[sys.argv.index("--batch-size") + 1]) if "--batch-size" in sys.argv \
        else 64
    steady = (len(steps) - 11) * batch / (steps[-1] - steps[10]) if len(steps) > 20 else None
    print(json.dumps({"first_step_s": steps[0] if steps else None, "images_per_s": steady,
                      "peak_rss_mib": peak_rss_mib()}), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
