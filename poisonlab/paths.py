"""Where a command will write, checked before anything runs.

A results directory that is an existing file, or a YAML path whose folder does not
exist, would otherwise fail with a traceback after the config and the data were
checked (a local run), or only once a Vertex job had finished (``--wait``
downloading its results). These checks give the one-line error instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from poisonlab.errors import PoisonlabError


def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (``.`` for a bare name)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_dir(path: str | Path, flag: str) -> None:
    """Fail unless ``path`` is a directory, or can be made one (its missing parents too).

    ``flag`` names the option the path came from (``--output-dir``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PoisonlabError(
            f"{flag} {path} is a file, not a directory; give a directory (created if missing)"
        )
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise PoisonlabError(
            f"{flag} {path}: {base} is a file, so no directory can be made under it; "
            "give another directory"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise PoisonlabError(
            f"{flag} {path}: {base} is not writable; give a directory you can write to"
        )


def check_output_file(path: str | Path, flag: str) -> None:
    """Fail unless a file can be written at ``path``: not a directory, in an existing
    writable directory. ``flag`` names the option the path came from (``--output``)."""
    path = Path(path)
    if path.is_dir():
        raise PoisonlabError(
            f"{flag} {path} is a directory; give a file path, e.g. {path / 'pipeline.yaml'}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise PoisonlabError(
            f"{flag} {path}: the directory {folder} does not exist; create it, or give a "
            "path in an existing directory"
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PoisonlabError(f"{flag} {path} is not writable; give a path you can write to")
