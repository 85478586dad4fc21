"""A throwaway PostgreSQL cluster for tests and CI: initdb into a temporary folder as the ``postgres`` account,
listen on a free 127.0.0.1 port, trust local connections, stop and delete it at the end.

``python -m tests.pg_cluster`` starts one and prints its URL (CI exports it as ``CAI_TEST_PG_URL``);
``python -m tests.pg_cluster stop FOLDER`` stops it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("CAI_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_ACCOUNT = "postgres"
PASSWORD = "s3cret-Test-pw"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(*command: str) -> None:
    """Runs a server binary as the ``postgres`` account (initdb refuses root), or as ourselves when we are not root."""
    if os.geteuid() == 0:
        command = ("runuser", "-u", PG_ACCOUNT, "--", *command)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start() -> tuple[str, Path]:
    """Starts a cluster; returns its URL (with a password, as a real deployment has) and its folder."""
    folder = Path(tempfile.mkdtemp(prefix="cai-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(PG_ACCOUNT)
        os.chown(folder, account.pw_uid, account.pw_gid)
    password_file = folder / "pw"
    password_file.write_text(PASSWORD)
    if os.geteuid() == 0:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    port = _free_port()
    data = folder / "data"
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_ACCOUNT, "--auth=scram-sha-256",
                 f"--pwfile={password_file}", "-E", "UTF8", "--no-sync")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                 f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off", "start")
    return f"postgresql://{PG_ACCOUNT}:{PASSWORD}@127.0.0.1:{port}/postgres", folder


def stop(folder: Path) -> None:
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w", "stop")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stop"]:
        stop(Path(sys.argv[2]))
    else:
        url, folder = start()
        print(url, folder)
