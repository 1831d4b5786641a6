import os

import pytest

from bindbench.core.files import write_atomic


def test_a_write_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    assert write_atomic(path, lambda tmp: tmp.write_text("new")) == path
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["report.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_write_leaves_the_old_file_and_nothing_else(tmp_path, error):
    path = tmp_path / "report.html"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half a fi")
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, write)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.html"]
