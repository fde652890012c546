"""Statements on the conversation tables, built once: the helpers core.conversation_rows and
core.outbound_rows build theirs with.

Every message that comes in or goes out is written with single statements built once with bound
parameters, not through the ORM's unit of work: building a statement and its cache key costs more
than executing it (bench/README.md, "Where the time goes").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.storage.models import Message

# Where the statements run: a session, or a plain connection (Inbox.receive).
Rows = Session | Connection
INSERT_MESSAGE = insert(Message.__table__).returning(Message.__table__.c.id)
# The databases that take INSERTs and UPDATEs as WITH clauses of another statement, so that rows
# written together cost one statement (`insert_row`); the others write a statement a row.
ONE_STATEMENT_DIALECTS = ("postgresql",)


def bound(table: Any, *columns: str, prefix: str = "new_") -> dict[str, Any]:
    """SET (or VALUES) clauses for `columns`, each bound to a parameter named after its column with
    `prefix` (a parameter named as its column is reserved in an UPDATE), typed as its column."""
    return {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in columns}


def row_update(table: Any, *columns: str, prefix: str = "new_", row_id: str = "row_id") -> Any:
    """An UPDATE of `columns` (bound as `bound` binds them) in the row of `table` whose id is the
    parameter `row_id`."""
    return update(table).where(table.c.id == bindparam(row_id)).values(bound(table, *columns, prefix=prefix))


def run_update(rows: Rows, statement: Any, row_id: int, values: dict[str, Any]) -> None:
    """Run a `row_update` on the row `row_id`: `values` by column name."""
    rows.execute(statement, {"row_id": row_id, **prefixed("new_", values)})


# In a statement of several WITH clauses each part's parameters are prefixed apart, and created_at
# is given (SQLAlchemy would name two tables' created_at alike).
def insert_row(table: Any, prefix: str, *columns: str, **earlier: Any) -> Any:
    """An INSERT of one row into `table`: `columns` bound as `bound` binds them, and the columns in
    `earlier` set from the row of an earlier WITH clause (its column given)."""
    return insert(table).values(
        {
            **{name: select(column).scalar_subquery() for name, column in earlier.items()},
            **bound(table, *columns, prefix=prefix),
        }
    )


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in values.items()}


def one_statement(rows: Rows) -> bool:
    """Whether the database the rows are on writes rows together in one statement (ONE_STATEMENT_DIALECTS)."""
    return (rows.get_bind() if isinstance(rows, Session) else rows).dialect.name in ONE_STATEMENT_DIALECTS
