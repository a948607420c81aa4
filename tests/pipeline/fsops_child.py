"""Child process for the fsops crash matrix: move one file, die at a given step.

usage: fsops_child.py DB SRC DST STEP {exit,sigkill} {link,copy} FILE_ID
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pipeline.db import Writer, open_database
from pipeline.fsops import Mover, MoveRequest
from pipeline.models import FileStatus


def main() -> None:
    db_path, src, dst, step, how, method, file_id = sys.argv[1:8]

    def checkpoint(name: str) -> None:
        if name == step:
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(17)

    writer = Writer(open_database(Path(db_path)))
    mover = Mover(writer, force_copy=method == "copy", checkpoint=checkpoint)
    request = MoveRequest(Path(src), Path(dst), int(file_id), FileStatus.DUPLICATE)
    mover.move(request)
    writer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
