"""The store's SQL is written once with SQLite's placeholders (``?``, and ``?N`` where a
parameter is used twice); PostgreSQL numbers its own (``$N``). ``to_postgres`` rewrites one
into the other, leaving string literals, quoted names and comments as they are, so that a
``?`` inside a literal stays a question mark."""

from __future__ import annotations

import functools

# Statements the store runs are a few hundred distinct texts; each is translated once.
_CACHE_SIZE = 2048


@functools.lru_cache(maxsize=_CACHE_SIZE)
def to_postgres(sql: str) -> str:
    """``sql`` with each placeholder outside literals, quoted names and comments numbered
    the way SQLite numbers it: ``?N`` is parameter N, and a bare ``?`` is one more than the
    largest number given so far (so ``?1 … ?1 … ?`` is ``$1 … $1 … $2``).

    PostgreSQL's own ``?`` operators (jsonb ``?``, ``?|``, ``?&``) cannot be written in the
    store's SQL for that reason; their functions (``jsonb_exists`` …) can. A named
    parameter (SQLite's ``:name``) is refused: PostgreSQL has none."""
    out: list[str] = []
    largest = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = _closing_quote(sql, i)
            out.append(sql[i:end])
            i = end
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end])
            i = end
        elif c == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1:
                number = int(sql[i + 1:j])
                if number < 1:
                    raise ValueError(f"parameter ?{number} in {sql!r}: numbers start at 1")
            else:
                number = largest + 1
            largest = max(largest, number)
            out.append(f"${number}")
            i = j
        elif c == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") and (
                i == 0 or sql[i - 1] != ":"):
            # SQLite's named parameters (:name, with a dict) would reach PostgreSQL as a
            # syntax error far from their cause.
            raise ValueError(f"named parameter at {sql[i:i + 20]!r} in {sql!r}: the store's "
                             "SQL numbers its parameters (?N) for both engines")
        else:
            j = i + 1
            while j < n and sql[j] not in "'\"-/?:":
                j += 1
            out.append(sql[i:j])
            i = j
    return "".join(out)


def _closing_quote(sql: str, start: int) -> int:
    """The index just past the literal or quoted name opening at ``start``; a doubled
    quote inside it is the quote character itself. An unclosed one runs to the end (the
    server then says what is wrong with the statement)."""
    quote = sql[start]
    i = start + 1
    while True:
        end = sql.find(quote, i)
        if end < 0:
            return len(sql)
        if sql.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1
