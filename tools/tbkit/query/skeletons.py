"""Table rewrites done once per query shape, not once per request.

Qualifying a rendered endpoint query's tables (Tinybird's `replace_tables`) parses and formats the whole query
again: about 0.7 ms, on every call, because the text changes with every parameter value. A `Skeletons` cache
does it once per *shape*: the string literals of the rendered query (and of the node subqueries it inlines) are
swapped for numbered sentinel literals, that skeleton is rewritten once, and each later call only puts its own
literals back in place of the sentinels.

The result is the same text as rewriting the request's query itself:

- Tinybird renders the template as always (types, defaults, `{{ error() }}`, escaping: nothing changes there);
  only the table rewrite is reused.
- A literal is put back as it was rendered, and only when the rewriter would print it the same way: printable
  ASCII without a quote or a backslash (the formatter re-quotes a literal; for these characters its output is the
  input). A query holding any other literal (an escaped quote, a backslash, a control character, non-ASCII text),
  or a function that reads a table name from a string (`dictGet`, `joinGet`, ...), or a literal whose text the
  parser reads (`INTERVAL '1 day'`, `DATE '...'`), is rewritten directly, as before.
- The first request of each shape rewrites both its own query and the skeleton, and keeps the skeleton only if
  putting that request's literals back gives exactly its own rewrite; otherwise the shape is remembered as one
  to rewrite directly.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..errors import TbkitError

# One lexeme of rendered SQL that may hold a quote: a comment, a quoted identifier, or a string literal.
_LEXEME = re.compile(
    r"--[^\n]*|/\*.*?\*/|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|(?P<literal>'(?:[^'\\]|\\.|'')*')",
    re.DOTALL,
)
# A literal the rewriter prints as it reads it: printable ASCII, no quote, no backslash.
_PLAIN = re.compile(r"'[ !-&(-\[\]-~]*'")
# What makes the rewrite depend on a literal's text: functions taking a table or dictionary name as a string (as
# in Tinybird's own cache of parsed queries, plus joinGet), and typed literals the parser converts.
_TEXT_MATTERS = re.compile(
    r"\b(?:dictGet\w*|dictHas|dictIsIn|hasColumnInTable|joinGet\w*|remote\w*|cluster\w*)\s*\(|"
    r"\b(?:INTERVAL|DATE|TIMESTAMP|DATETIME)\s*'",
    re.IGNORECASE,
)
_QUOTES = re.compile(r"['\"`\\]")

Replacements = dict[str, tuple[str, str]]


class _Literals:
    """Literals taken out of queries, numbered across every query of one request."""

    def __init__(self, nonce: str):
        self.values: list[str] = []
        self._prefix = f"'tbkit{nonce}x"

    def take(self, sql: str) -> str | None:
        """`sql` with its string literals replaced by sentinels; None when a literal or the query is not plain."""
        if _TEXT_MATTERS.search(sql):
            return None
        parts: list[str] = []
        last = 0
        for match in _LEXEME.finditer(sql):
            literal = match.group("literal")
            between = sql[last : match.start()]
            if _QUOTES.search(between):  # a quote no lexeme accounts for (unbalanced): not ours to reason about
                return None
            parts.append(between)
            if literal is None:
                parts.append(match.group(0))
            elif not _PLAIN.fullmatch(literal):
                return None
            else:
                parts.append(f"{self._prefix}{len(self.values)}'")
                self.values.append(literal)
            last = match.end()
        if _QUOTES.search(sql[last:]):
            return None
        parts.append(sql[last:])
        return "".join(parts)


class Skeletons:
    """Rewritten skeletons by shape, for `rewrite`; safe to share between threads."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.hits = self.misses = 0
        self._nonce = secrets.token_hex(4)
        self._sentinel = re.compile(rf"'tbkit{self._nonce}x(\d+)'")
        self._cache: OrderedDict[tuple, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def rewrite(self, sql: str, replacements: Replacements, rewrite: Callable[[str, Replacements], str]) -> str:
        """`rewrite(sql, replacements)`, from the skeleton of its shape when one is known.

        `replacements` map names to qualified tables or to `("", "(subquery)")`; subqueries' literals are part
        of the shape too. Errors are `rewrite`'s own, raised by rewriting `sql` itself.
        """
        literals = _Literals(self._nonce)
        shape = literals.take(sql)
        shaped: Replacements = {}
        for name, (database, target) in replacements.items():
            if shape is None:
                break
            if database == "" and target.startswith("("):
                taken = literals.take(target)
                if taken is None:
                    shape = None
                    break
                shaped[name] = (database, taken)
            else:
                shaped[name] = (database, target)
        if shape is None:
            return rewrite(sql, replacements)
        key = (shape, tuple(sorted(shaped.items())))
        with self._lock:
            known = key in self._cache
            skeleton = self._cache.get(key)
            if known:
                self._cache.move_to_end(key)
                self.hits += 1
        if known:
            return rewrite(sql, replacements) if skeleton is None else self._fill(skeleton, literals.values)
        rewritten = rewrite(sql, replacements)
        try:
            skeleton = rewrite(shape, shaped)
        except TbkitError:
            skeleton = None
        if skeleton is not None and self._fill(skeleton, literals.values) != rewritten:
            skeleton = None  # this shape's literals matter to the rewrite: rewrite its requests directly
        with self._lock:
            self.misses += 1
            self._cache[key] = skeleton
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return rewritten

    def _fill(self, skeleton: str, values: list[str]) -> str:
        return self._sentinel.sub(lambda m: values[int(m.group(1))], skeleton)

    def clear(self) -> None:
        """Forget every skeleton."""
        with self._lock:
            self._cache.clear()
