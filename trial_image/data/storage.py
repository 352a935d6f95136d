"""Where files live: a local path (a PersistentVolumeClaim, a bucket mounted by its CSI driver),
``gs://`` and any other scheme TensorFlow's own file system knows, or ``s3://``.

TensorFlow reads local and ``gs://`` files inside the input pipeline itself. It dropped S3 from
``tf.io.gfile``, so ``s3://`` goes through s3fs, configured the way every AWS tool is: the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or a role), ``AWS_REGION`` and
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` variables, never a flag.
"""

from __future__ import annotations

import glob as globbing
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from trial_image.errors import InputError


class Entry(NamedTuple):
    """One file: its path relative to the root it was listed under, and what changes when its
    content does (size and modification time, or the object's ETag)."""

    relative: str
    size: int
    version: str


class Storage:
    """Local files."""

    native = True  # TensorFlow's own readers open these paths

    def join(self, root: str, relative: str) -> str:
        return os.path.join(root, relative)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def entries(self, root: str) -> Iterator[Entry]:
        """Every file under ``root``, recursively (``os.scandir``: no second ``stat`` per file)."""
        pending = [(root, "")]
        while pending:
            folder, prefix = pending.pop()
            with os.scandir(folder) as listing:
                for item in listing:
                    if item.is_dir():
                        pending.append((item.path, f"{prefix}{item.name}/"))
                    elif item.is_file():
                        stat = item.stat()
                        yield Entry(prefix + item.name, stat.st_size, str(stat.st_mtime_ns))

    def describe(self, path: str) -> Entry:
        stat = os.stat(path)
        return Entry(os.path.basename(path), stat.st_size, str(stat.st_mtime_ns))

    def glob(self, pattern: str) -> list[str]:
        return sorted(globbing.glob(pattern))

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def reader(self) -> Callable[[Any], Any]:
        """A ``tf.data`` map function: file path → its bytes."""
        import tensorflow as tf

        return tf.io.read_file

    def local(self, path: str) -> str:
        """A path TensorFlow's readers (``TFRecordDataset``) can open."""
        return path


class TensorFlowStorage(Storage):
    """``gs://`` and the other schemes ``tf.io.gfile`` has (``ram://`` in the tests)."""

    def join(self, root: str, relative: str) -> str:
        return root.rstrip("/") + "/" + relative

    def is_dir(self, path: str) -> bool:
        import tensorflow as tf

        return tf.io.gfile.isdir(path)

    def entries(self, root: str) -> Iterator[Entry]:
        import tensorflow as tf

        root = root.rstrip("/")
        for folder, _, files in tf.io.gfile.walk(root):
            for name in files:
                path = folder.rstrip("/") + "/" + name
                stat = tf.io.gfile.stat(path)
                yield Entry(path[len(root) + 1:], stat.length, str(stat.mtime_nsec))

    def describe(self, path: str) -> Entry:
        import tensorflow as tf

        stat = tf.io.gfile.stat(path)
        return Entry(path.rsplit("/", 1)[-1], stat.length, str(stat.mtime_nsec))

    def glob(self, pattern: str) -> list[str]:
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(pattern))

    def read_bytes(self, path: str) -> bytes:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()


class S3Storage(Storage):
    """``s3://bucket/key`` through s3fs; shards are copied to local disk one at a time as a
    pass reaches them, and deleted when the process ends."""

    native = False

    def __init__(self) -> None:
        try:
            import s3fs
        except ImportError:  # pragma: no cover - the trial image installs it
            raise InputError("s3:// needs the s3fs package (pip install s3fs)") from None
        self.fs = s3fs.S3FileSystem()
        self._copies: dict[str, str] = {}
        self._spool: tempfile.TemporaryDirectory | None = None

    def join(self, root: str, relative: str) -> str:
        return root.rstrip("/") + "/" + relative

    def is_dir(self, path: str) -> bool:
        return self.fs.isdir(path)

    def entries(self, root: str) -> Iterator[Entry]:
        root = root.rstrip("/")
        bare = root.removeprefix("s3://")
        for key, info in sorted(self.fs.find(root, detail=True).items()):
            yield Entry(key[len(bare) + 1:], int(info.get("size", 0)),
                        str(info.get("ETag") or info.get("LastModified", "")))

    def describe(self, path: str) -> Entry:
        info = self.fs.info(path)
        return Entry(path.rsplit("/", 1)[-1], int(info.get("size", 0)),
                     str(info.get("ETag") or info.get("LastModified", "")))

    def glob(self, pattern: str) -> list[str]:
        return sorted("s3://" + key for key in self.fs.glob(pattern))

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def reader(self) -> Callable[[Any], Any]:
        import tensorflow as tf

        def read(path: Any) -> Any:
            data = tf.py_function(lambda p: self.fs.cat_file(p.numpy().decode()), [path],
                                  tf.string)
            data.set_shape(())
            return data

        return read

    def local(self, path: str) -> str:
        if path not in self._copies:
            if self._spool is None:
                self._spool = tempfile.TemporaryDirectory(prefix="nasflow-shards-")
            target = os.path.join(self._spool.name, f"{len(self._copies):06d}.tfrecord")
            self.fs.get_file(path, target)
            self._copies[path] = target
        return self._copies[path]


def storage_for(path: str) -> Storage:
    if path.startswith("s3://"):
        return S3Storage()
    if "://" in path:
        return TensorFlowStorage()
    return Storage()


def source_error(where: str, exc: Exception) -> InputError:
    """A storage failure (no such bucket, no credentials, refused) as one line naming the
    source."""
    return InputError(f"{where}: cannot read it ({exc.__class__.__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})")
