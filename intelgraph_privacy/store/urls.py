"""Store URLs: which backend a URL names, its normal form, its printable (password-masked) form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from intelgraph_privacy.errors import ConfigError

Dialect = Literal["sqlite", "postgresql"]

#: The file name of the embedded SQLite store inside a data directory.
SQLITE_FILE_NAME = "intelgraph.sqlite3"

_POSTGRES_NAMES = {"postgres", "postgresql"}
# Anything between "scheme://user:" and "@" is a password, even in a URL we cannot parse.
_RAW_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")


def mask_raw(url: str) -> str:
    """`url` with any password replaced by `***`, for messages about URLs that do not parse."""
    return _RAW_PASSWORD.sub(r"\1***@", url)


def mask(url: URL) -> str:
    """The URL as text with its password replaced by `***`."""
    return url.render_as_string(hide_password=True)


def sqlite_url_for(data_dir: Path) -> str:
    """The URL of the embedded SQLite store in `data_dir`."""
    return f"sqlite:///{(data_dir / SQLITE_FILE_NAME).resolve()}"


def normalise(raw: str) -> tuple[URL, Dialect]:
    """Parse a store URL and rewrite it to the driver this library uses.

    `postgres://` and `postgresql://` become `postgresql+psycopg://` (psycopg 3); SQLite file paths
    become absolute, so that a URL handed to another process means the same file.
    Raises ConfigError, with the password masked, for anything else.
    """
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"invalid store URL {mask_raw(raw)!r}: {exc}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in _POSTGRES_NAMES:
        if driver not in ("", "psycopg"):
            raise ConfigError(
                f"unsupported PostgreSQL driver {driver!r} in {mask(url)!r}: "
                "use postgresql+psycopg:// (or postgresql://)"
            )
        if not url.database:
            raise ConfigError(f"store URL {mask(url)!r} names no database")
        return url.set(drivername="postgresql+psycopg"), "postgresql"
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(f"unsupported SQLite driver {driver!r} in {mask(url)!r}")
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            # An in-memory database is private to one connection, so a pooled engine (and the
            # audit writer's thread) would each see a different, empty database.
            raise ConfigError(
                f"store URL {mask(url)!r} is not a SQLite file: use sqlite:///path/to/file"
            )
        path = Path(database).expanduser().resolve()
        if not path.parent.is_dir():
            raise ConfigError(f"the directory of the SQLite store {str(path)!r} does not exist")
        return url.set(drivername="sqlite", database=str(path)), "sqlite"
    raise ConfigError(
        f"unsupported store URL {mask(url)!r}: use sqlite:///path or postgresql://user@host/db"
    )
