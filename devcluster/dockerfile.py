"""The repository's Dockerfile read as data: its stages, each stage's ENV, ENTRYPOINT, CMD and
the repository folders it copies.
The node agent runs nasflow's images from it, and tests/test_images.py checks the install lines
against it, so that both follow the one file that builds the real images."""

from __future__ import annotations

import json
import re

from devcluster.layout import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> dict[str, tuple[str, str]]:
    """stage name -> (base, body)"""
    parts = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[1:]
    out = {}
    for part in parts:
        head, _, body = part.partition("\n")
        base, _, name = head.partition(" AS ")
        out[name.strip()] = (base.strip(), body)
    return out


def logical_lines(body: str) -> list[str]:
    return [re.sub(r"\\\n\s*", " ", line) for line in re.split(r"(?<!\\)\n", body)]


def chain(target: str) -> list[str]:
    """``target`` and the stages it is built on, base first."""
    all_stages, found = stages(), []
    while target in all_stages:
        found.append(target)
        target = all_stages[target][0]
    return list(reversed(found))


def env(target: str) -> dict[str, str]:
    """The ENV a container of ``target`` starts with (every stage it is built on)."""
    out: dict[str, str] = {}
    for stage in chain(target):
        for line in logical_lines(stages()[stage][1]):
            if line.startswith("ENV "):
                out.update(re.findall(r"(\w+)=(\S+)", line[4:]))
    return out


def copied(target: str) -> dict[str, str]:
    """The repository paths the image of ``target`` holds: ``COPY SRC /DEST`` lines of its
    chain (``--from`` copies are build output, such as the venv), DEST -> SRC."""
    out = {}
    for stage in chain(target):
        for line in logical_lines(stages()[stage][1]):
            parts = line.split()
            if parts[:1] == ["COPY"] and not parts[1].startswith("--") and len(parts) == 3 \
                    and parts[2].startswith("/"):
                out[parts[2]] = parts[1]
    return out


def instruction(target: str, name: str) -> list[str]:
    """The last exec-form ``name`` (ENTRYPOINT, CMD) of ``target``'s chain; [] if none."""
    found: list[str] = []
    for stage in chain(target):
        for line in logical_lines(stages()[stage][1]):
            if line.startswith(name + " "):
                found = json.loads(line[len(name) + 1:])
    return found
