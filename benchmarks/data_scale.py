"""Data at scale: what one trial costs as a folder grows from 10k to 200k images, streamed.

Generates class-per-folder sets of rendered shapes (``tests/shapes.py``: 5 recognisable
classes, RGB PNG) at 32×32 and 64×64, 200k images each (the 10k and 50k sets are hard links to
the first files), and converts each set to TFRecord shards (``python -m trial_image data``).

1. Per trial (``python -m tests.measured_trial``, the trial image's own entry point): time to
   the first training step, training images/s over the first epoch's steps (after 10), peak RSS
   (VmHWM); ``--time-budget`` stops each trial after its budget, ``--skip-test``.
2. Side by side in this process, same model, batch size and image size, each first in turn,
   median of ``--rounds``: a plain Keras baseline (``keras.utils.image_dataset_from_directory``
   + ``model.fit``), nasflow's folder stream, nasflow's shards; with the files in the page cache
   (warm), then, where the benchmark runs as root, with the cache dropped before each timed
   pass (cold: the files come from disk, as they do when the data outgrows the node's memory).
3. ``--story``: instead, the whole ``nasflow run --finalize --promote`` of
   ``manifests/experiments/your-data/tpe-folder-pvc.yaml`` on the 50k 32×32 folder (4 trials of
   3 epochs, one at a time on 2 cores; final training 3 epochs), its wall time, and the
   champion's run's MLflow dataset inputs.

    .venv/bin/python benchmarks/data_scale.py [--counts 10000 50000 200000] [--sizes 32 64]
        [--root /var/tmp/nasflow-data-scale] [--budget 30] [--rounds 5] [--steps 200] [--story]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRIAL = ["--epochs", "1", "--skip-test", "--num-blocks", "2", "--filters", "16",
         "--batch-size", "64"]


def make_sets(root: Path, counts: list[int], size: int) -> dict[int, Path]:
    from tests.shapes import CLASSES, write_folder

    full = root / f"{size}px" / f"n{max(counts)}"
    if not (full / ".complete").exists():
        started = time.perf_counter()
        write_folder(full, max(counts), size=size)
        (full / ".complete").touch()
        print(f"generated {max(counts)} {size}×{size} PNGs in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    sets = {max(counts): full}
    for count in counts:
        if count == max(counts):
            continue
        subset = root / f"{size}px" / f"n{count}"
        if not (subset / ".complete").exists():
            for kind in CLASSES:
                (subset / kind).mkdir(parents=True, exist_ok=True)
            for i in range(count):  # write_folder's names: index i is in class i mod 5
                name = f"{CLASSES[i % len(CLASSES)]}/{i:07d}.png"
                if not (subset / name).exists():
                    os.link(full / name, subset / name)
            (subset / ".complete").touch()
        sets[count] = subset
    return sets


def make_shards(folder: Path) -> Path:
    from trial_image.data.shard_writer import write_shards

    out = folder.with_name(folder.name + "-shards")
    if not (out / "dataset.json").exists():
        started = time.perf_counter()
        write_shards(str(folder), str(out), 0.2, 2048)
        print(f"wrote shards of {folder.name} in {time.perf_counter() - started:.0f} s",
              flush=True)
    return out


def trial(dataset: str, size: int, budget: float, uri: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KATIB_"))}
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "tests.measured_trial", "--dataset", dataset,
                           "--image-size", f"{size}x{size}", "--time-budget", str(budget),
                           *TRIAL], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"trial on {dataset} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stderr.strip().splitlines()[-1])


def drop_page_cache() -> bool:
    """Evict cached file data (root only), so the next pass reads from disk, as a pass over a
    dataset larger than the node's memory does."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def side_by_side(folder: Path, shards: Path, size: int, rounds: int, steps: int,
                 cold: bool) -> dict:
    """Training images/s of the same model fed three ways, median of ``rounds``; ``cold``: the
    page cache dropped before each timed pass."""
    import keras

    from trial_image.builder import build_model
    from trial_image.data import load
    from trial_image.frontends import hyperparams
    from trial_image.spec import Frame, Training
    from trial_image.training import compile_model

    ours = load(f"dir:{folder}", image_size=(size, size), test=False)
    sharded = load(f"tfrecord:{shards}", image_size=(size, size), test=False)
    spec = hyperparams.to_spec(num_blocks=2, filters=[16, 16], kernel_sizes=[3, 3],
                               poolings=["max", "max"], batch_norm=True, frame=Frame(
                                   input_shape=ours.input_shape, num_classes=ours.num_classes,
                                   input_scale=ours.scale, training=Training(batch_size=64)))
    feeds = {
        "keras image_dataset_from_directory": lambda: keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=64, label_mode="int", seed=0,
            shuffle=True, verbose=False).repeat(),
        "nasflow dir:": lambda: ours.train.batches(64, shuffle_seed=0).repeat(),
        "nasflow tfrecord:": lambda: sharded.train.batches(64, shuffle_seed=0).repeat(),
    }
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    names = list(feeds)
    for round_ in range(rounds):
        for name in names[round_ % 3:] + names[:round_ % 3]:  # each goes first once in 3
            feed = feeds[name]
            keras.utils.set_random_seed(0)
            model = build_model(spec)
            compile_model(model, spec.training)
            data = feed()
            model.fit(data, steps_per_epoch=20, epochs=1, verbose=0)  # tracing, buffers
            gc.collect()
            if cold:
                drop_page_cache()
            started = time.perf_counter()
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
            rates[name].append(steps * 64 / (time.perf_counter() - started))
            # the pass's iterator (threads, buffers) must not run on beside the next feed
            del model, data
            gc.collect()
    print(f"  rounds: {json.dumps({k: [round(x) for x in r] for k, r in rates.items()})}",
          flush=True)
    return {name: statistics.median(r) for name, r in rates.items()}


def story(root: Path, count: int) -> None:
    import yaml
    from mlflow import MlflowClient

    folder = make_sets(root, [count], 32)[count]
    manifest = ROOT / "manifests" / "experiments" / "your-data" / "tpe-folder-pvc.yaml"
    experiment = yaml.safe_load(manifest.read_text())
    spec = experiment["spec"]
    spec.update(maxTrialCount=4, parallelTrialCount=1)
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    replace = {"--dataset=": f"--dataset=dir:{folder}", "--image-size=": "--image-size=32x32",
               "--epochs=": "--epochs=3"}
    container["command"] = [next((v for k, v in replace.items() if arg.startswith(k)), arg)
                            for arg in container["command"]]
    work = root / "story"  # kept: `mlflow ui --backend-store-uri sqlite:///<work>/mlflow.db`
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    uri = f"sqlite:///{work}/mlflow.db"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "run", str(path), "--finalize",
                    "--promote", "--final-epochs", "3", "--quiet", "--tracking-uri", uri],
                   cwd=work, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    client = MlflowClient(uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("tpe-folder-pvc", "champion")
    run = client.get_run(champion.run_id)
    print(f"nasflow run --finalize --promote on {count} 32×32 images: {wall / 60:.1f} min; "
          f"champion version {champion.version}, Test-Accuracy "
          f"{run.data.metrics['Test-Accuracy']:.4f}", flush=True)
    for item in run.inputs.dataset_inputs:
        d = item.dataset
        print(f"  dataset input: {d.name} ({item.tags[0].value}), digest {d.digest}, "
              f"{json.loads(d.profile)['num_examples']} examples, source {d.source}")
    print(f"  version tags: test digest {champion.tags.get('nasflow.test_digest')}, "
          f"data digest {champion.tags.get('nasflow.data_digest')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--root", type=Path, default=Path("/var/tmp/nasflow-data-scale"))
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--story", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.story:
        story(args.root, sorted(args.counts)[len(args.counts) // 2])
        return
    low, high = min(args.counts), max(args.counts)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        for size in args.sizes:
            sets = make_sets(args.root, args.counts, size)
            rows = {}
            for count in args.counts:
                shards = make_shards(sets[count])
                for kind, dataset in (("dir", f"dir:{sets[count]}"),
                                      ("tfrecord", f"tfrecord:{shards}")):
                    rows[kind, count] = trial(dataset, size, args.budget, uri)
                    r = rows[kind, count]
                    print(f"{size}×{size} {kind:8} {count:>7} images: first step "
                          f"{r['first_step_s']:5.1f} s, {r['images_per_s']:6.0f} images/s, "
                          f"peak RSS {r['peak_rss_mib']:5.0f} MiB", flush=True)
            for kind in ("dir", "tfrecord"):
                a, b = rows[kind, low], rows[kind, high]
                print(f"{size}×{size} {kind}: {high // 1000}k vs {low // 1000}k: peak RSS "
                      f"×{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}, time to first step "
                      f"×{b['first_step_s'] / a['first_step_s']:.2f}", flush=True)
            middle = sorted(args.counts)[len(args.counts) // 2]
            for cache in ("warm", "cold"):
                if cache == "cold" and not drop_page_cache():
                    print("cold page cache: skipped (dropping it needs root)", flush=True)
                    continue
                rates = side_by_side(sets[middle], make_shards(sets[middle]), size,
                                     args.rounds, args.steps, cache == "cold")
                keras_rate = rates["keras image_dataset_from_directory"]
                for name, rate in rates.items():
                    print(f"{size}×{size} side by side ({middle // 1000}k folder, {cache} page "
                          f"cache): {name:36} {rate:6.0f} images/s (×{rate / keras_rate:.2f} "
                          f"Keras)", flush=True)
                print(f"{size}×{size} {cache} page cache: shards vs folder "
                      f"×{rates['nasflow tfrecord:'] / rates['nasflow dir:']:.2f}", flush=True)


if __name__ == "__main__":
    main()
