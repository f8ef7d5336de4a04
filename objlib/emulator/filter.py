"""``metadataFilter``: the subset of AIP-160 (google.aip.dev/160) that File Search documents,
parsed and evaluated against a document's custom metadata.

    course = "OPAR" AND (year >= 1991 OR NOT lesson = 3)

What is understood:

- comparisons ``key OP value`` with ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; a value is a
  quoted string (``"..."`` or ``'...'``, backslash escapes), a number (``1991``, ``-2.5``,
  ``1e3``) or a bare word, which AIP-160 reads as a string (``course = OPAR``);
- ``AND``, ``OR``, ``NOT`` (upper case, as AIP-160 spells them) and parentheses. As AIP-160
  says, ``OR`` binds tighter than ``AND``: ``a AND b OR c`` is ``a AND (b OR c)``.

How it matches [doc: the File Search ``MetadataFilter`` reference: "If the value types are
not consistent, the result will be an empty set"; ``<`` and the like are "Supported by
numeric"]:

- a string value is compared with a ``stringValue`` for equality only; ``<``, ``<=``, ``>``,
  ``>=`` with a string value is refused when parsed [unknown: stricter];
- a number is compared with a ``numericValue``, as floats;
- a key the document does not have, a value of the other type, or a ``stringListValue`` (the
  reference filters those with INCLUDES/EXCLUDES, which AIP-160 has no comparison for) never
  matches; ``NOT`` of such a comparison does.

Everything else is refused with :class:`FilterError` (a ``ValueError`` carrying the position):
a lone word (AIP-160's global restriction), the has operator ``:``, implicit AND by juxtaposition,
functions, lower-case ``and``/``or``/``not`` used as operators, unbalanced parentheses or quotes.
The emulator answers it with 400 INVALID_ARGUMENT [unknown: the wording].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

COMPARATORS = ("<=", ">=", "!=", "=", "<", ">")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_WORD = re.compile(r"[^\s()<>=!:\"']+")
KEYWORDS = ("AND", "OR", "NOT")


class FilterError(ValueError):
    """The filter cannot be parsed; ``position`` is the 0-based character where it failed."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position + 1})")
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str      # "(" ")" "op" "string" "word" "end"
    text: str
    value: object
    position: int


def _tokens(text: str) -> list[Token]:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append(Token(ch, ch, ch, i))
            i += 1
        elif ch in "\"'":
            value, end = _string(text, i)
            out.append(Token("string", text[i:end], value, i))
            i = end
        elif ch in "<>=!:":
            op = next((c for c in COMPARATORS if text.startswith(c, i)), None)
            if op is None:
                what = "the has operator ':'" if ch == ":" else f"'{ch}'"
                raise FilterError(f"{what} is not supported; use =, !=, <, <=, > or >=", i)
            out.append(Token("op", op, op, i))
            i += len(op)
        else:
            match = _WORD.match(text, i)
            assert match is not None  # every other character was handled above
            word = match.group()
            out.append(Token("word", word, word, i))
            i += len(word)
    out.append(Token("end", "", None, len(text)))
    return out


def _string(text: str, start: int) -> tuple[str, int]:
    quote, chars, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif ch == quote:
            return "".join(chars), i + 1
        else:
            chars.append(ch)
            i += 1
    raise FilterError("unterminated string", start)


# --------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Comparison:
    key: str
    op: str
    value: str | float

    def matches(self, metadata: dict) -> bool:
        have = metadata.get(self.key)
        if isinstance(self.value, str):
            if not isinstance(have, str):
                return False
            return (have == self.value) == (self.op == "=")
        if isinstance(have, bool) or not isinstance(have, (int, float)):
            return False
        have, want = float(have), self.value
        return {"=": have == want, "!=": have != want, "<": have < want, "<=": have <= want,
                ">": have > want, ">=": have >= want}[self.op]


@dataclass(frozen=True)
class Not:
    inner: Expression

    def matches(self, metadata: dict) -> bool:
        return not self.inner.matches(metadata)


@dataclass(frozen=True)
class All:
    parts: tuple

    def matches(self, metadata: dict) -> bool:
        return all(p.matches(metadata) for p in self.parts)


@dataclass(frozen=True)
class Any:
    parts: tuple

    def matches(self, metadata: dict) -> bool:
        return any(p.matches(metadata) for p in self.parts)


Expression = Comparison | Not | All | Any


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def _take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _keyword(self, word: str) -> bool:
        return self.token.kind == "word" and self.token.text == word

    def parse(self):
        tree = self.expression()
        if self.token.kind != "end":
            self._unexpected("AND, OR or the end of the filter")
        return tree

    def expression(self):
        parts = [self.factor()]
        while self._keyword("AND"):
            self._take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def factor(self):
        parts = [self.term()]
        while self._keyword("OR"):
            self._take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Any(tuple(parts))

    def term(self):
        if self._keyword("NOT"):
            self._take()
            return Not(self.simple())
        return self.simple()

    def simple(self):
        if self.token.kind == "(":
            self._take()
            inner = self.expression()
            if self.token.kind != ")":
                self._unexpected("')'")
            self._take()
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        key = self.token
        if key.kind != "word" or key.text in KEYWORDS or not _KEY.match(key.text):
            self._unexpected("a metadata key")
        self._take()
        if self.token.kind != "op":
            self._unexpected(f"a comparison after '{key.text}' (=, !=, <, <=, > or >=)")
        op = self._take().text
        arg = self.token
        value: str | float
        if arg.kind == "string":
            value = str(arg.value)
        elif arg.kind == "word" and arg.text not in KEYWORDS:
            value = float(arg.text) if _NUMBER.match(arg.text) else arg.text
        else:
            self._unexpected(f"a value after '{key.text} {op}'")
        self._take()
        if isinstance(value, str) and op not in ("=", "!="):
            raise FilterError(f"'{op}' compares numbers; {value!r} is a string", arg.position)
        return Comparison(key.text, op, value)

    def _unexpected(self, wanted: str) -> NoReturn:
        token = self.token
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        raise FilterError(f"expected {wanted}, found {found}", token.position)


def parse(text: str | None):
    """The filter's tree (``.matches(metadata) -> bool``), or None for an empty filter."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()
