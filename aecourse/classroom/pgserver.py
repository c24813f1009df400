"""A throwaway PostgreSQL server on loopback, for grading with several workers where none is at hand.

    python -m aecourse.classroom.pgserver start FOLDER   # prints the gradebook URL
    python -m aecourse.classroom.pgserver stop FOLDER

It uses the Debian package ``postgresql`` (``apt-get install postgresql``): ``initdb`` a cluster in
FOLDER, listen on 127.0.0.1 only, trust local connections, create the database ``gradebook``.
As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root), so FOLDER
must be a place that user can reach (a folder under /tmp is); nothing else's permissions change.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator


class PostgresError(RuntimeError):
    """PostgreSQL cannot be started here; the message says what to install."""


def bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live (newest installed version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent
    raise PostgresError("PostgreSQL is not installed: apt-get install postgresql (or point --db at a server you have)")


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.getuid() == 0 else cmd


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path | str) -> str:
    """Start a server with its data in ``folder``; return the gradebook's SQLAlchemy URL."""
    folder = Path(folder).resolve()
    data, bins, port = folder / "data", bindir(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        for parent in folder.parents:  # the server, running as postgres, must be able to reach its folder
            mode = parent.stat()
            if not (mode.st_mode & stat.S_IXOTH or mode.st_uid == owner.pw_uid):
                raise PostgresError(f"the postgres user cannot reach {folder}: {parent} is closed to other users "
                                    f"(mode {stat.filemode(mode.st_mode)}). Choose a folder under /tmp, or open "
                                    f"{parent} with `chmod o+x {parent}` if that is what you want.")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    if (data / "postmaster.pid").exists():
        stop(folder)  # a server left running from an earlier start
    if not data.exists():
        subprocess.run(_as_owner([str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True)
    options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off -c synchronous_commit=off -c max_connections=200"
    done = subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                                     "-w", "start"]), capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresError(f"pg_ctl could not start the server: {done.stderr.strip() or done.stdout.strip()}")
    (folder / "port").write_text(str(port))
    import psycopg

    for _ in range(50):
        try:
            with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS gradebook")
                conn.execute("CREATE DATABASE gradebook")
            break
        except psycopg.OperationalError:
            time.sleep(0.2)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/gradebook"


def stop(folder: Path | str) -> None:
    """Stop the server started in ``folder`` (its data stays there)."""
    data = Path(folder).resolve() / "data"
    if data.exists():
        subprocess.run(_as_owner([str(bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """A throwaway server in a fresh folder under the temporary directory; yields its URL, then removes it."""
    folder = Path(tempfile.mkdtemp(prefix="aecourse-postgres-"))
    try:
        yield start(folder)
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"start", "stop"}:
        sys.exit(__doc__)
    if sys.argv[1] == "start":
        print(start(sys.argv[2]))
    else:
        stop(sys.argv[2])
