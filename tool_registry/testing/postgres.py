"""A throwaway PostgreSQL server for tests and benchmarks, started from the server binaries.

    with ThrowawayPostgres() as pg:
        conn = psycopg.connect(pg.url)   # postgresql://mana:...@127.0.0.1:PORT/mana

What it does:

- Finds `initdb`, `pg_ctl` and `postgres` at run time (`find_pg_bindir`): `$MANA_PG_BINDIR`,
  then every `$PATH` directory, then `pg_config --bindir`, then `/usr/lib/postgresql/*/bin`
  newest version first. No path is hard-coded into the search result.
- `initdb` in a fresh temp dir (`mana-pg-*` under the system temp dir): UTF8, locale C,
  superuser `mana`; the Unix socket trusts (it lives in the private temp dir), TCP asks for a
  random password (SCRAM) so other local users cannot walk in on the loopback port.
  Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): a crash loses the
  server, which is thrown away anyway.
- `pg_ctl start` on a free 127.0.0.1 port (`listen_addresses='127.0.0.1'`, retried on another
  port when that one was taken meanwhile), waits until it accepts connections, creates the
  database and gives its `postgresql://` URL.
- `stop()` (also `__exit__`, and an `atexit` hook for a session that ends without reaching it)
  runs `pg_ctl stop -m fast` and removes the temp dir. `stop_server()` / `start_server()` stop
  and start the same server (data dir and port kept), for tests of a database restart.

`initdb` and `postgres` refuse to run as root. When the process runs as root, every server
binary runs as an unprivileged account (subprocess `user=`/`group=`, no supplementary groups):
`$MANA_TEST_PG_USER`, else `postgres` (created by every distribution's server package), else
`nobody`. The temp dir is owned by that account.

A test process killed outright (SIGKILL, or SIGTERM without a handler) runs no `atexit` hook,
and `pg_ctl` detaches the server from it. Each temp dir therefore records its owner's pid:
the next `ThrowawayPostgres.start()` stops the servers of owners that are gone and removes their
dirs (`reap_stale`).

This module imports only the standard library at module level (psycopg is imported where a
database is created), so CI can run the finder before the virtualenv exists:
`python3 tool_registry/testing/postgres.py --find` prints the bin directory or, exit status 1,
what was searched and how to install the server.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:  # psycopg is imported where used (see above)
    import psycopg

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
VERSIONED_ROOTS = (Path("/usr/lib/postgresql"),)
DIR_PREFIX = "mana-pg-"
SUPERUSER = "mana"
OWNER_FILE = "owner.pid"
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; Fedora/RHEL: "
    "`dnf install postgresql-server`; macOS: `brew install postgresql`), or point "
    "MANA_PG_BINDIR at the directory holding initdb and pg_ctl, or set MANA_TEST_DATABASE_URL "
    "to a server the tests may create databases on"
)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """No throwaway server could be had; the message says why."""


class PostgresNotFound(PostgresUnavailable):
    """The server binaries are not installed where the finder looks."""


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """`/usr/lib/postgresql/15/bin` -> (15,); non-numeric versions sort last."""
    parts = bindir.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_pg_bindir(
    search_path: str | None = None,
    *,
    versioned_roots: Sequence[Path] = VERSIONED_ROOTS,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`, searched in this order:
    `$MANA_PG_BINDIR`, each `$PATH` directory (`search_path` replaces `$PATH`), the
    `--bindir` of the first `pg_config` on that path, `<root>/*/bin` for each versioned root
    (newest version first). Raises `PostgresNotFound` naming every place searched."""
    env = os.environ if environ is None else environ
    path = env.get("PATH", os.defpath) if search_path is None else search_path
    searched: list[str] = []

    override = env.get("MANA_PG_BINDIR")
    if override:
        searched.append(f"MANA_PG_BINDIR={override}")
        if _has_binaries(Path(override)):
            return Path(override)

    dirs = [Path(d) for d in path.split(os.pathsep) if d]
    searched.append(f"PATH={path}")
    for directory in dirs:
        if _has_binaries(directory):
            return directory

    pg_config = shutil.which("pg_config", path=path)
    if pg_config is None:
        searched.append("pg_config --bindir (no pg_config on PATH)")
    else:
        try:
            out = subprocess.run(  # noqa: S603 - a binary found on PATH, fixed arguments
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            searched.append(f"{pg_config} --bindir (failed: {exc})")
        else:
            searched.append(f"{pg_config} --bindir -> {out}")
            if out and _has_binaries(Path(out)):
                return Path(out)

    for root in versioned_roots:
        searched.append(f"{root}/*/bin")
        candidates = [Path(p) for p in glob.glob(str(root / "*" / "bin"))]
        for bindir in sorted(candidates, key=_version_key, reverse=True):
            if _has_binaries(bindir):
                return bindir

    raise PostgresNotFound(
        f"no PostgreSQL server binaries ({', '.join(REQUIRED_BINARIES)}) found; searched: "
        + "; ".join(searched)
        + f". To fix: {INSTALL_HINT}."
    )


@dataclass(frozen=True)
class _RunAs:
    """The account the server binaries run as (None: the current one)."""

    name: str | None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_this_process(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None)
        wanted = os.environ.get("MANA_TEST_PG_USER")
        for name in [wanted] if wanted else ["postgres", "nobody"]:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid != 0:
                return cls(name, entry.pw_uid, entry.pw_gid)
        raise PostgresUnavailable(
            "running as root, and initdb/postgres refuse to run as root, but no unprivileged "
            f"account to run them as was found (tried {wanted or 'postgres, nobody'}); create "
            "one (`useradd --system mana-pg`) and set MANA_TEST_PG_USER=mana-pg"
        )

    def subprocess_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _server_env() -> dict[str, str]:
    """The environment minus PG* variables, which would point the binaries elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(
    base: Path | None = None, bindir: Path | None = None, run_as: _RunAs | None = None
) -> list[Path]:
    """Stop the servers of throwaway dirs whose owning process is gone, remove those dirs, and
    return them. Dirs without an owner file (being set up) and of live owners are left alone."""
    base = Path(tempfile.gettempdir()) if base is None else base
    reaped: list[Path] = []
    for directory in base.glob(DIR_PREFIX + "*"):
        try:
            owner = int((directory / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        data = directory / "data"
        if bindir is not None and (data / "postmaster.pid").exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(  # noqa: S603 - pg_ctl from the located bindir
                    [str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"],
                    capture_output=True,
                    timeout=30,
                    cwd=directory,
                    env=_server_env(),
                    stdin=subprocess.DEVNULL,
                    **(run_as or _RunAs(None)).subprocess_kwargs(),
                )
        shutil.rmtree(directory, ignore_errors=True)
        reaped.append(directory)
    return reaped


def database_url(url: str, dbname: str) -> str:
    """`url` with its database replaced by `dbname` (user, password, host and query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lower-case database name: {name!r}")
    return name


def create_database(admin_url: str, dbname: str) -> str:
    """CREATE DATABASE `dbname` from template0 (UTF8) on `admin_url`'s server; its URL."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(_check_identifier(dbname))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(name))
    return database_url(admin_url, dbname)


def drop_database(admin_url: str, dbname: str) -> None:
    """DROP DATABASE IF EXISTS `dbname`, closing connections still open to it."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(_check_identifier(dbname))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def unique_database_name(prefix: str = "mana_test") -> str:
    """A database name no other test process picks: the prefix, this pid and random hex."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def temporary_database(admin_url: str, prefix: str = "mana_test") -> Iterator[str]:
    """A fresh, uniquely named database on `admin_url`'s server for the block; dropped after."""
    dbname = unique_database_name(prefix)
    url = create_database(admin_url, dbname)
    try:
        yield url
    finally:
        drop_database(admin_url, dbname)


class TemplateDatabases:
    """Fresh, already migrated databases for tests, made by copying one template.

    Migrating a database costs more than copying one, so `start()` creates a template database
    (from template0) and applies the schema to it once (`migrate(connection)`, given by the
    caller, on an autocommit connection: e.g. the core migrations plus an application's);
    `fresh()` then gives each test a database made with `CREATE DATABASE x TEMPLATE <template>`
    and drops it after (`DROP DATABASE ... WITH (FORCE)`). PostgreSQL copies a template only while no session is connected to it:
    the template's own connection is closed as soon as it is migrated, and nothing else ever
    connects to it.

    The copy is made ahead and the drop happens behind: while a test runs, a worker thread
    already copies the database the next `fresh()` hands out and drops the previous test's, so
    the server does that work beside the tests instead of between them; `close()` waits for
    every drop and raises one that failed. A copy made ahead that failed (the server was restarting under a test) is made again
    when it is asked for, where a failure that persists is raised.

    One autocommit admin connection, used only by that worker thread, serves every create and
    drop (a new connection per test costs a password handshake); when it is found broken it is
    replaced once. On PostgreSQL 15 and later the copy uses `STRATEGY FILE_COPY`, faster than
    the WAL-logged copy for databases this small. `close()` drops the template and the copy
    made ahead."""

    def __init__(
        self,
        admin_url: str,
        migrate: Callable[[psycopg.Connection[Any]], object],
        *,
        prefix: str = "mana_test",
    ) -> None:
        self.admin_url = admin_url
        self._migrate = migrate
        self._prefix = _check_identifier(prefix)
        self.template: str | None = None
        self._admin: psycopg.Connection[Any] | None = None
        self._copy_clause = ""
        # How the admin connection shows in pg_stat_activity (this process's, on a shared server).
        self.application_name = f"mana-tests-{os.getpid()}"
        self._worker: ThreadPoolExecutor | None = None
        self._ahead: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def start(self) -> Self:
        """Create and migrate the template (idempotent), and start copying the first database."""
        if self.template is not None:
            return self
        import psycopg

        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mana-test-dbs")
        name = unique_database_name(self._prefix + "_template")
        create_database(self.admin_url, name)
        self.template = name
        try:
            with psycopg.connect(database_url(self.admin_url, name), autocommit=True) as conn:
                self._migrate(conn)
            version = int(self._on_worker(self._execute, "SHOW server_version_num", fetch=True))
            self._copy_clause = " STRATEGY FILE_COPY" if version >= 150000 else ""
            self._ahead = self._worker.submit(self._create)
        except BaseException:
            self.close()
            raise
        return self

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        """The URL of a new database holding the template's schema and rows; dropped after."""
        if self.template is None or self._worker is None:
            raise RuntimeError("TemplateDatabases.start() was not called")
        dbname = self._take_ahead()
        self._ahead = self._worker.submit(self._create)  # the next one, while this test runs
        try:
            yield database_url(self.admin_url, dbname)
        finally:
            # Dropped on the worker after the next copy, while the next test runs; a failed drop
            # is raised by close().
            self._drops = [d for d in self._drops if not d.done() or d.exception() is not None]
            self._drops.append(self._worker.submit(self._drop, dbname))

    def close(self) -> None:
        """Drop the copy made ahead and the template, close the admin connection and stop the
        worker. Safe to call more than once."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        ahead, self._ahead = self._ahead, None
        template, self.template = self.template, None
        drops, self._drops = self._drops, []

        def finish() -> None:
            try:
                if ahead is not None and ahead.exception() is None:
                    self._drop(ahead.result())
                if template is not None:
                    self._drop(template)
            finally:
                admin, self._admin = self._admin, None
                if admin is not None:
                    admin.close()

        try:
            worker.submit(finish).result()
        finally:
            worker.shutdown(wait=True)
        for drop in drops:  # all ran before `finish`
            drop.result()

    def _take_ahead(self) -> str:
        """The database copied ahead, or a new copy when it failed (see the class docstring)."""
        import psycopg

        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                return ahead.result()
            except psycopg.Error:
                pass  # copied again just below, on the worker, where a lasting failure raises
        name: str = self._on_worker(self._create)
        return name

    def _on_worker(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` on the worker thread, the only user of the admin connection, and wait."""
        assert self._worker is not None
        return self._worker.submit(fn, *args, **kwargs).result()

    def _create(self) -> str:
        from psycopg import sql

        assert self.template is not None
        dbname = unique_database_name(self._prefix)
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}" + self._copy_clause).format(
                sql.Identifier(dbname), sql.Identifier(self.template)
            )
        )
        return dbname

    def _drop(self, dbname: str) -> None:
        from psycopg import sql

        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )

    def _execute(self, statement: Any, *, fetch: bool = False) -> Any:
        """Run one statement on the admin connection, reconnecting once when that connection
        turns out broken (the server was restarted since its last use)."""
        import psycopg

        try:
            cursor = self._connection().execute(statement)
        except psycopg.OperationalError:
            if self._admin is None or not self._admin.broken:
                raise
            cursor = self._connection().execute(statement)
        if not fetch:
            return None
        row = cursor.fetchone()
        return None if row is None else row[0]

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._admin is None or self._admin.closed or self._admin.broken:
            self._admin = psycopg.connect(
                self.admin_url, autocommit=True, application_name=self.application_name
            )
        return self._admin


class ThrowawayPostgres:
    """A private PostgreSQL server in a temp dir, on a free 127.0.0.1 port (see the module
    docstring). `start()`/`stop()` or `with ThrowawayPostgres() as pg: ... pg.url`."""

    def __init__(
        self,
        dbname: str = "mana",
        *,
        bindir: Path | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.dbname = _check_identifier(dbname)
        self._bindir = bindir
        self._base_dir = base_dir
        self._start_timeout = start_timeout
        self._password = secrets.token_urlsafe(24)
        self._run_as: _RunAs | None = None
        self.dir: Path | None = None
        self.port: int | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    @property
    def data_dir(self) -> Path:
        return self._require_dir() / "data"

    @property
    def socket_dir(self) -> Path:
        """The Unix socket's directory (the temp dir; libpq `host=` for socket connections)."""
        return self._require_dir()

    @property
    def admin_url(self) -> str:
        """The superuser's URL for the `postgres` maintenance database (TCP, loopback)."""
        if self.port is None:
            raise PostgresUnavailable("the throwaway server is not running")
        password = quote(self._password, safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The URL of the database created at start (`dbname`)."""
        return database_url(self.admin_url, self.dbname)

    def start(self) -> Self:
        if self.dir is not None:
            return self
        bindir = self.bindir
        self._run_as = _RunAs.for_this_process()
        base = Path(tempfile.gettempdir()) if self._base_dir is None else self._base_dir
        reap_stale(base, bindir, self._run_as)
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base))
        atexit.register(self.stop)
        try:
            self._run_as.chown(self.dir)
            (self.dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
            self._initdb()
            self._start_on_free_port()
            create_database(self.admin_url, self.dbname)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """`pg_ctl stop -m fast` (then `-m immediate` if that fails) and remove the temp dir.
        Safe to call more than once."""
        directory, self.dir = self.dir, None
        atexit.unregister(self.stop)
        if directory is None:
            return
        try:
            if self.port is not None and (directory / "data" / "postmaster.pid").exists():
                for mode in ("fast", "immediate"):
                    result = self._run(
                        "pg_ctl", "stop", "-D", str(directory / "data"), "-m", mode, "-w",
                        "-t", "30", cwd=directory, check=False,
                    )  # fmt: skip
                    if result.returncode == 0:
                        break
        finally:
            self.port = None
            shutil.rmtree(directory, ignore_errors=True)

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the running server (`pg_ctl stop -m fast`, or `smart` / `immediate`) but keep
        its data dir and port: `start_server()` brings the same database back, as a restart
        of a real server would (tests of a database going away under load)."""
        directory = self._require_dir()
        if self.port is None:
            raise PostgresUnavailable("the throwaway server was never started")
        self._run(
            "pg_ctl", "stop", "-D", str(directory / "data"), "-m", mode, "-w", "-t", "60",
            cwd=directory,
        )  # fmt: skip

    def start_server(self) -> None:
        """Start the server stopped by `stop_server()` again, on the same port."""
        directory = self._require_dir()
        if self.port is None:
            raise PostgresUnavailable("the throwaway server was never started")
        self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(directory / "postgres.log"),
            "-w", "-t", str(int(self._start_timeout)), cwd=directory,
            timeout=self._start_timeout + 30,
        )  # fmt: skip

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _require_dir(self) -> Path:
        if self.dir is None:
            raise PostgresUnavailable("the throwaway server is not running")
        return self.dir

    def _run(
        self, binary: str, *args: str, cwd: Path, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        run_as = self._run_as or _RunAs(None)
        try:
            result = subprocess.run(  # noqa: S603 - located server binary, argument list
                [str(self.bindir / binary), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=cwd,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                **run_as.subprocess_kwargs(),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{binary} could not run: {exc}") from exc
        if check and result.returncode != 0:
            who = f" (as user {run_as.name})" if run_as.name else ""
            raise PostgresUnavailable(
                f"{binary} {' '.join(args[:1])} failed{who} with exit status "
                f"{result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def _initdb(self) -> None:
        directory = self._require_dir()
        pwfile = directory / "pwfile"
        pwfile.write_text(self._password + "\n")
        pwfile.chmod(0o600)
        assert self._run_as is not None
        self._run_as.chown(pwfile)
        try:
            self._run(
                "initdb", "-D", str(directory / "data"), "--username", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local", "trust",
                "--auth-host", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                "--no-sync", cwd=directory,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_settings(self, port: int) -> None:
        directory = self._require_dir()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "'" + str(directory).replace("'", "''") + "'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        conf = self.data_dir / "postgresql.mana.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        if self._run_as is not None:
            self._run_as.chown(conf)
        main = self.data_dir / "postgresql.conf"
        if "postgresql.mana.conf" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude = 'postgresql.mana.conf'\n")

    def _start_on_free_port(self) -> None:
        directory = self._require_dir()
        log = directory / "postgres.log"
        last_error = ""
        for _attempt in range(5):
            port = _free_loopback_port()
            self._write_settings(port)
            result = self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(log), "-w",
                "-t", str(int(self._start_timeout)), cwd=directory, check=False,
                timeout=self._start_timeout + 30,
            )  # fmt: skip
            if result.returncode == 0:
                self.port = port
                return
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            last_error = f"{result.stderr.strip()}\n{tail}".strip()
            if "could not bind" not in tail and "already in use" not in tail:
                break
        raise PostgresUnavailable(f"pg_ctl start failed: {last_error}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--find"]:
        print("usage: postgres.py --find", file=sys.stderr)
        return 2
    try:
        print(find_pg_bindir())
    except PostgresNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
