"""Read-only access to a generated sample graph: the rows behind the GraphQL resolvers.

Rows are plain dicts keyed by GraphQL field names (`riskScore`, `openedOn`, ...), so the
default GraphQL field resolver serves scalars directly and tests can compare a response
with the raw data. Links are carried as IDs (`employerId`) and resolved on demand.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError

#: The columns `cohort` can group people by.
COHORT_KEYS: Final = ("city", "ageBand")
#: Upper bound of `search` results.
SEARCH_LIMIT: Final = 50

_PERSON_COLUMNS: Final = (
    "p.id, p.name, p.ssn, p.email, p.phone, p.dob, p.age, p.city, p.country, "
    "p.risk_score AS riskScore, p.aliases, p.employer_id AS employerId"
)
_ORG_COLUMNS: Final = "o.id, o.name, o.registration_number AS registrationNumber, o.country, o.city"
_CASE_COLUMNS: Final = "c.id, c.reference, c.title, c.status, c.opened_on AS openedOn, c.informant"
# Ten-year bands: 30-39. Integer division in SQLite truncates, as wanted for ages >= 0.
_AGE_BAND_SQL: Final = "((p.age / 10) * 10) || '-' || ((p.age / 10) * 10 + 9)"
_COHORT_SQL: Final = {"city": "p.city", "ageBand": _AGE_BAND_SQL}

Row = dict[str, Any]


def type_of(node_id: str) -> str | None:
    """The GraphQL type named by an ID's prefix (`P-` Person, `O-` Organization, `C-` Case)."""
    return _TYPE_BY_PREFIX.get(node_id[:2])


_TYPE_BY_PREFIX: Final = {"P-": "Person", "O-": "Organization", "C-": "Case"}


def _like_pattern(text: str) -> str:
    # Escape LIKE's wildcards so user text is matched literally.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SampleGraph:
    """A read-only view of a sample graph database (see `generate_database`).

    Safe to share between threads: one connection, used under a lock. Organisations are cached
    in memory, since many people share few employers and the file never changes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no sample graph database (run generate_database)")
        # mode=ro: the API never writes; check_same_thread off because the lock serialises use.
        self._conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._orgs: dict[str, Row] = {}
        try:
            self.metadata: dict[str, str] = {
                row["key"]: row["value"] for row in self._query("SELECT key, value FROM meta")
            }
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"{self.path}: not a sample graph database: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> SampleGraph:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- single objects ----------------------------------------------------------------------

    def person(self, person_id: str) -> Row | None:
        """One person's full row (aliases decoded, employer as `employerId`), or None."""
        rows = self._query(f"SELECT {_PERSON_COLUMNS} FROM person p WHERE p.id = ?", (person_id,))
        return _person(rows[0]) if rows else None

    def organization(self, org_id: str) -> Row | None:
        """One organisation's row, or None."""
        row = self._orgs.get(org_id)
        if row is None:
            rows = self._query(
                f"SELECT {_ORG_COLUMNS} FROM organization o WHERE o.id = ?", (org_id,)
            )
            if not rows:
                return None  # misses are not cached: arbitrary IDs must not grow the cache
            row = self._orgs[org_id] = dict(rows[0])
        return dict(row)

    def case(self, case_id: str) -> Row | None:
        """One case's row, or None."""
        rows = self._query(f"SELECT {_CASE_COLUMNS} FROM case_file c WHERE c.id = ?", (case_id,))
        return dict(rows[0]) if rows else None

    def node(self, node_id: str) -> Row | None:
        """Any object by its globally unique ID (the prefix names the table), or None."""
        kind = type_of(node_id)
        if kind == "Person":
            return self.person(node_id)
        if kind == "Organization":
            return self.organization(node_id)
        if kind == "Case":
            return self.case(node_id)
        return None

    # -- lists -----------------------------------------------------------------------------

    def people(self, first: int = 20, after: str | None = None) -> list[Row]:
        """People ordered by ID, at most `first`, strictly after the cursor ID `after`."""
        rows = self._query(
            f"SELECT {_PERSON_COLUMNS} FROM person p WHERE p.id > ? ORDER BY p.id LIMIT ?",
            (after or "", max(first, 0)),
        )
        return [_person(r) for r in rows]

    def knows(self, person_id: str, first: int | None = None) -> list[Row]:
        """The people a person knows (the relation is symmetric), ordered by ID."""
        rows = self._query(
            f"SELECT {_PERSON_COLUMNS} FROM knows k JOIN person p ON p.id = k.other_id "
            "WHERE k.person_id = ? ORDER BY p.id LIMIT ?",
            (person_id, _sql_limit(first)),
        )
        return [_person(r) for r in rows]

    def employees(self, org_id: str, first: int | None = None) -> list[Row]:
        """An organisation's employees, ordered by ID."""
        rows = self._query(
            f"SELECT {_PERSON_COLUMNS} FROM person p WHERE p.employer_id = ? ORDER BY p.id LIMIT ?",
            (org_id, _sql_limit(first)),
        )
        return [_person(r) for r in rows]

    def cases_of(self, person_id: str) -> list[Row]:
        """The cases a person is a subject of, ordered by case ID."""
        rows = self._query(
            f"SELECT {_CASE_COLUMNS} FROM case_subject s JOIN case_file c ON c.id = s.case_id "
            "WHERE s.person_id = ? ORDER BY c.id",
            (person_id,),
        )
        return [dict(r) for r in rows]

    def subjects(self, case_id: str) -> list[Row]:
        """A case's subjects, in the order they were recorded."""
        rows = self._query(
            f"SELECT {_PERSON_COLUMNS} FROM case_subject s JOIN person p ON p.id = s.person_id "
            "WHERE s.case_id = ? ORDER BY s.position",
            (case_id,),
        )
        return [_person(r) for r in rows]

    def search(self, text: str, limit: int = SEARCH_LIMIT) -> list[Row]:
        """Case-insensitive substring match over person names, organisation names and case
        titles: people first, then organisations, then cases, each by ID; at most `limit`."""
        pattern = _like_pattern(text)
        found: list[Row] = []
        queries = (
            (f"SELECT {_PERSON_COLUMNS} FROM person p WHERE p.name LIKE ? ESCAPE '\\'", _person),
            (f"SELECT {_ORG_COLUMNS} FROM organization o WHERE o.name LIKE ? ESCAPE '\\'", dict),
            (f"SELECT {_CASE_COLUMNS} FROM case_file c WHERE c.title LIKE ? ESCAPE '\\'", dict),
        )
        for sql, convert in queries:
            if len(found) >= limit:
                break
            rows = self._query(f"{sql} ORDER BY id LIMIT ?", (pattern, limit - len(found)))
            found.extend(convert(r) for r in rows)
        return found

    def cohort(self, group_by: Iterable[str]) -> list[Row]:
        """Counts of people grouped by any of `COHORT_KEYS`; keys not grouped on are None.

        Raises ValueError on an unknown key. Rows are ordered by the grouped keys.
        """
        keys = list(dict.fromkeys(group_by))  # drop duplicates, keep order
        unknown = [k for k in keys if k not in _COHORT_SQL]
        if unknown:
            raise ValueError(
                f"cannot group by {', '.join(map(repr, unknown))}; "
                f"expected any of {', '.join(COHORT_KEYS)}"
            )
        selected = ", ".join(f"{_COHORT_SQL[k]} AS {k}" for k in keys)
        if not keys:
            return [{"city": None, "ageBand": None, "count": self.count("person")}]
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        rows = self._query(
            f"SELECT {selected}, COUNT(*) AS count FROM person p "
            f"GROUP BY {positions} ORDER BY {positions}"
        )
        return [{"city": None, "ageBand": None, **dict(r)} for r in rows]

    def count(self, table: str) -> int:
        """Number of rows in `person`, `organization`, `case_file`, `knows` or `case_subject`."""
        if table not in {"person", "organization", "case_file", "knows", "case_subject"}:
            raise ValueError(f"unknown table {table!r}")
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])


def _sql_limit(first: int | None) -> int:
    # SQLite treats a negative LIMIT as "no limit".
    return -1 if first is None else max(first, 0)


def _person(row: sqlite3.Row) -> Row:
    person = dict(row)
    person["aliases"] = codec.loads(person["aliases"])
    return person
