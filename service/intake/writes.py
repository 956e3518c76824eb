"""Hot-path writes as Core INSERTs: the rows are built as ORM objects but never enter a session.

The ORM's unit of work (identity map, change tracking, flush ordering) is bookkeeping these
rows do not need: they are inserted once and never changed in the same request, and on the
check path it cost more CPU per comment than the rest of the write. The objects stay plain
transient rows the API answers from, so callers see the same `tables.Comment`.

On PostgreSQL a batch of rows goes as ONE parameter, a JSON array that the server unpacks
with `json_populate_recordset` into the table's own row type. The statement's text is then the
same whatever the batch size, so psycopg converts it once and prepares it on the server; a
multi-row `INSERT ... VALUES` has a different text for every size, and past 50 parameters
psycopg re-parses it on every call. The figures are in docs/benchmarks.md ("Hot-path writes").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class

from service import tables

RowT = TypeVar("RowT", bound=tables.Base)


def transient(cls: type[RowT], **values: Any) -> RowT:
    """A new row of `cls` holding `values`, built without the ORM's attribute events: 4 µs
    for a comment, where `cls(**values)` costs 70 µs. It behaves as any new object: read it,
    set a relationship on it, or add it to a session, whose INSERT takes what it holds."""
    configure_mappers()  # as a first use of the class would (at once when done already)
    manager = manager_of_class(cls)
    assert manager is not None, f"{cls.__name__} is not mapped"
    row: RowT = manager.new_instance()
    vars(row).update(values)
    return row


@cache
def _columns(cls: type[tables.Base]) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, column, is primary key) for each mapped column of `cls`."""
    mapper = sa_inspect(cls)
    return tuple(
        (attr.key, attr.columns[0].key, attr.columns[0].primary_key) for attr in mapper.column_attrs
    )


def column_values(row: tables.Base) -> dict[str, Any]:
    """The columns set on a transient row, as an INSERT's parameters (an unset id is left out)."""
    state = vars(row)
    values = {}
    for attr, column, primary in _columns(type(row)):
        if attr in state and not (primary and state[attr] is None):
            values[column] = state[attr]
    return values


@cache
def _defaults(cls: type[tables.Base]) -> tuple[tuple[str, Callable[[], Any]], ...]:
    """(column, a function of no arguments giving its Python-side default) for each column
    that has one: what a Core INSERT fills in for a column left out."""
    found = []
    for column in table_of(cls).columns:
        default = column.default
        if default is None or not (default.is_scalar or default.is_callable):
            continue
        arg: Any = getattr(default, "arg", None)
        if default.is_callable:
            found.append((column.key, lambda arg=arg: arg(None)))  # wrapped to take a context
        else:
            found.append((column.key, lambda arg=arg: arg))
    return tuple(found)


def _json_value(value: Any) -> str:
    """A column value json cannot write itself, as PostgreSQL reads it from JSON text."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"no JSON form for a {type(value).__name__} column value")


def _recordset(rows: Sequence[tables.Base]) -> tuple[Table, tuple[str, ...], str]:
    """The rows' table, the columns they set (with defaults filled in) and the rows as one
    JSON array of objects keyed by column name."""
    cls = type(rows[0])
    defaults = _defaults(cls)
    values = []
    for row in rows:
        row_values = column_values(row)
        for column, default in defaults:
            if column not in row_values:
                row_values[column] = default()
        values.append(row_values)
    columns = tuple(values[0])
    if any(v.keys() != values[0].keys() for v in values[1:]):
        raise ValueError("rows inserted together must set the same columns")
    return table_of(cls), columns, json.dumps(values, default=_json_value)


@cache
def _recordset_insert(
    inserts: tuple[tuple[Table, tuple[str, ...]], ...], quote: Callable[[str], str]
) -> str:
    """One statement inserting into each (table, columns) from one JSON parameter each: the
    first INSERTs as data-modifying WITH queries, so all happen or none (foreign keys between
    them are checked at the statement's end)."""
    parts = []
    for table, columns in inserts:
        if any(table.c[column].name != column for column in columns):
            raise ValueError(f"{table.name}: a column's key differs from its name")
        names = ", ".join(quote(column) for column in columns)
        name = quote(table.name)
        parts.append(
            f"INSERT INTO {name} ({names}) "
            f"SELECT {names} FROM json_populate_recordset(NULL::{name}, %s::json)"
        )
    *first, last = parts
    if not first:
        return last
    return "WITH " + ", ".join(f"i{n} AS ({part})" for n, part in enumerate(first)) + " " + last


def _insert_recordsets(connection: Connection, groups: Sequence[Sequence[tables.Base]]) -> None:
    """INSERT groups of rows (each of one class) in one statement (PostgreSQL)."""
    sets = [_recordset(rows) for rows in groups if rows]
    if not sets:
        return
    quote = connection.dialect.identifier_preparer.quote
    statement = _recordset_insert(tuple((table, columns) for table, columns, _ in sets), quote)
    connection.exec_driver_sql(statement, tuple(payload for _, _, payload in sets))


def table_of(cls: type[tables.Base]) -> Table:
    """The Core table a mapped class is stored in."""
    table = cls.__table__
    assert isinstance(table, Table)
    return table


def insert_row(session: Session, row: tables.Base) -> None:
    """INSERT a transient row's columns in the session's transaction (not committed)."""
    session.execute(insert(table_of(type(row))), [column_values(row)])


def insert_all(session: Session, rows: Sequence[tables.Base]) -> None:
    """INSERT transient rows of one class in one statement (not committed).

    On PostgreSQL, as one JSON parameter (see the module's docstring). Elsewhere, with
    RETURNING, SQLAlchemy sends the rows as one multi-row INSERT ("insertmanyvalues") rather
    than the driver's executemany, which costs much more CPU per row.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _insert_recordsets(connection, [rows])
    else:
        table = table_of(type(rows[0]))
        statement = insert(table).returning(*table.primary_key.columns)
        session.execute(statement, [column_values(row) for row in rows]).close()


def insert_many(session: Session, *groups: Sequence[tables.Base]) -> bool:
    """Insert groups of transient rows (each group of one class) in one transaction and
    commit; False, rolled back, if a constraint refused any of them.

    Anything the session already did (a site created on first use) is committed first, so that
    a refused insert rolls back nothing but its own rows.

    On PostgreSQL every group goes in ONE statement, run in autocommit: one round trip where
    BEGIN, an INSERT per group and COMMIT took four, and no transaction to manage (a batch of
    5 checks: 0.9 ms of CPU against 1.4 ms).
    """
    if session.in_transaction():
        session.commit()
    if session.get_bind().dialect.name == "postgresql":
        try:
            autocommit = {"isolation_level": "AUTOCOMMIT"}
            _insert_recordsets(session.connection(execution_options=autocommit), groups)
        except IntegrityError:
            session.rollback()
            return False
        session.commit()  # nothing left to commit: hands the connection back to the pool
        return True
    try:
        for rows in groups:
            insert_all(session, rows)
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True
