"""Files written whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`.

    A reader sees the old file or the new one, never half of one. On any error or
    interrupt (a full disk, Ctrl-C) the temporary file is removed and the error raised:
    nothing is left behind.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file is the user's
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


POINTER = ".report"  # the symlink to the current build's folder


def publish(folder: str | Path, files: dict[str, str], build: str) -> dict[str, Path]:
    """Writes `files` ({name: text}) into `folder` as one build, so that the files on disk are
    always of one build, never a mix (a report's HTML and JSON); returns their paths.

    Each file is written whole into a hidden folder `.report-<build>`; `<folder>/<name>` is a
    relative symlink to `.report/<name>`, and `.report` a symlink to the build's folder that
    one rename replaces. Older builds are then removed. Every temporary name lives inside
    the build's folder, so an error, interrupt or kill leaves at most a folder that the
    next build removes. Where the file system has no symlinks, each file is replaced whole
    on its own.
    """
    folder = Path(folder)
    target = folder / f"{POINTER}-{build}"
    target.mkdir()
    try:
        if not _symlinks(target):
            shutil.rmtree(target)
            for name, text in files.items():
                write_atomic(folder / name, lambda tmp, text=text: tmp.write_text(text))
            return {name: folder / name for name in files}
        for name, text in files.items():
            (target / name).write_text(text)
        _link(target, folder / POINTER, target.name)
    except BaseException:
        if os.path.realpath(folder / POINTER) != os.path.realpath(target):
            shutil.rmtree(target, ignore_errors=True)
        raise
    for name in files:
        path = folder / name
        if not (path.is_symlink() and os.readlink(path) == f"{POINTER}/{name}"):
            _link(target, path, f"{POINTER}/{name}")  # the first build here: a file becomes a link
    for old in folder.glob(f"{POINTER}-*"):
        if old.name != target.name and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return {name: folder / name for name in files}


def _link(build: Path, path: Path, to: str) -> None:
    """Makes `path` a symlink to `to`, replacing what was there in one rename; the new link
    is made inside `build` first (the same file system), so a kill leaves nothing beside it."""
    tmp = build / f".link-{uuid.uuid4().hex[:8]}"
    os.symlink(to, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _symlinks(folder: Path) -> bool:
    """Whether `folder`'s file system has symlinks (most do; FAT and some network shares not)."""
    probe = folder / ".symlink-probe"
    try:
        os.symlink(".", probe)
    except OSError:
        return False
    probe.unlink()
    return True
