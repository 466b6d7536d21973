"""Message patterns of ``runPolicy.failurePolicy.rules``: a small regular-expression language
matched in linear time.

The operator searches a workload's termination message (at most a few KiB) with a pattern a
user wrote. Python's ``re`` backtracks: ``(a+)+$`` or even ``.*.*.*x`` can take minutes on such
a text and would stall a reconcile worker. So patterns are compiled here into a Thompson NFA and
simulated state set by state set (as RE2 and Go's ``regexp`` do): time is proportional to
``len(text) * states``, whatever the pattern.

Syntax (a subset of RE2 / Python ``re``; anything else is rejected with a message):

- literals, ``\\`` escapes of punctuation, ``\\t \\n \\r``
- ``.`` (any character but a newline), classes ``[abc]``, ``[^a-z0-9_]``,
  ``\\d \\D \\w \\W \\s \\S`` (also inside classes)
- groups ``( )`` and ``(?: )``, alternation ``|``
- repetition ``* + ?`` and ``{m}``, ``{m,}``, ``{m,n}`` (m, n <= 100), each optionally lazy
  (``*?``: the same for a yes/no search)
- anchors ``^`` and ``$`` (at line starts and ends), ``\\b`` and ``\\B``

Matching is case-insensitive and is a search: the pattern may match anywhere in the text.
No backreferences, look-arounds or inline flags (they need backtracking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PATTERN = 256
MAX_REPEAT = 100
MAX_STATES = 600

CharTest = Callable[[str], bool]


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


_CLASSES: dict[str, CharTest] = {
    "d": str.isdigit,
    "D": lambda c: not c.isdigit(),
    "w": _is_word,
    "W": lambda c: not _is_word(c),
    "s": str.isspace,
    "S": lambda c: not c.isspace(),
}
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}
_SPECIAL = set(".^$*+?{}[]()|\\")


class PatternError(ValueError):
    """The pattern is not in the supported syntax (the message says where)."""


# ---------------------------------------------------------------------------------- parsing
# AST: ("char", test) | ("seq", [nodes]) | ("alt", [nodes]) | ("rep", node, min, max|None)
#      | ("at", "^" | "$" | "b" | "B")
Node = tuple[object, ...]


@dataclass
class _Parser:
    src: str
    pos: int = 0

    def error(self, what: str) -> PatternError:
        return PatternError(f"{what} at position {self.pos} of {self.src!r}")

    def peek(self) -> str | None:
        return self.src[self.pos] if self.pos < len(self.src) else None

    def take(self) -> str:
        c = self.src[self.pos]
        self.pos += 1
        return c

    def parse(self) -> Node:
        node = self.alternation()
        if self.pos != len(self.src):
            raise self.error("unbalanced ')'")
        return node

    def alternation(self) -> Node:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.take()
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self) -> Node:
        items: list[Node] = []
        while (c := self.peek()) is not None and c not in "|)":
            atom = self.atom()
            items.append(self.quantified(atom))
        return ("seq", items)

    def quantified(self, atom: Node) -> Node:
        c = self.peek()
        if c is None or c not in "*+?{":
            return atom
        if atom[0] == "at":
            raise self.error("nothing to repeat")
        if c == "{":
            lo, hi = self.braces()
        else:
            self.take()
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        if self.peek() == "?":  # lazy: the same for a yes/no search
            self.take()
        if self.peek() in ("*", "+", "?", "{"):
            raise self.error("multiple repeat")
        return ("rep", atom, lo, hi)

    def braces(self) -> tuple[int, int | None]:
        start = self.pos
        end = self.src.find("}", start)
        if end < 0:
            raise self.error("unterminated '{'")
        body = self.src[start + 1 : end]
        lo_s, comma, hi_s = body.partition(",")
        if not lo_s.isdigit() or (hi_s and not hi_s.isdigit()):
            raise self.error(f"bad repetition {{{body}}}")
        lo = int(lo_s)
        hi: int | None = int(hi_s) if hi_s else (None if comma else lo)
        if lo > MAX_REPEAT or (hi is not None and (hi > MAX_REPEAT or hi < lo)):
            raise self.error(f"bad repetition {{{body}}} (at most {MAX_REPEAT}, min <= max)")
        self.pos = end + 1
        return lo, hi

    def atom(self) -> Node:
        c = self.take()
        if c == "(":
            if self.src.startswith("?:", self.pos):
                self.pos += 2
            elif self.peek() == "?":
                raise self.error("only (?: ) groups are supported (no look-arounds or flags)")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.error("missing ')'")
            self.take()
            return inner
        if c in "*+?{":
            raise self.error("nothing to repeat")
        if c in "^$":
            return ("at", c)
        if c == ".":
            return ("char", lambda x: x != "\n")
        if c == "[":
            return ("char", self.klass())
        if c == "\\":
            return self.escape(in_class=False)
        if c in "])}":
            raise self.error(f"unescaped {c!r}")
        return ("char", _lit(c))

    def escape(self, in_class: bool) -> Node:
        if self.peek() is None:
            raise self.error("trailing '\\'")
        c = self.take()
        if c in _CLASSES:
            return ("char", _CLASSES[c])
        if c in _ESCAPES:
            return ("char", _lit(_ESCAPES[c]))
        if not in_class and c in "bB":
            return ("at", c)
        if not c.isalnum():
            return ("char", _lit(c))
        raise self.error(f"unsupported escape \\{c}")

    def klass(self) -> CharTest:
        negate = False
        if self.peek() == "^":
            self.take()
            negate = True
        tests: list[CharTest] = []
        first = True
        while True:
            c = self.peek()
            if c is None:
                raise self.error("unterminated '['")
            if c == "]" and not first:
                self.take()
                break
            first = False
            self.take()
            if c == "\\":
                node = self.escape(in_class=True)
                test = node[1]
                assert callable(test)
                # A single escaped character may start a range (\.-z is rare; keep it simple).
                tests.append(test)
                continue
            if (
                self.peek() == "-"
                and self.pos + 1 < len(self.src)
                and self.src[self.pos + 1] != "]"
            ):
                self.take()
                hi = self.take()
                if hi == "\\":
                    raise self.error("escapes cannot end a range")
                if ord(hi) < ord(c):
                    raise self.error(f"bad range {c}-{hi}")
                tests.append(_range(c, hi))
            else:
                tests.append(_lit(c))

        def member(x: str) -> bool:
            return any(t(x) for t in tests) != negate

        return member


def _lit(c: str) -> CharTest:
    low = c.lower()
    return lambda x: x.lower() == low


def _range(lo: str, hi: str) -> CharTest:
    a, b = ord(lo), ord(hi)
    return lambda x: any(a <= ord(y) <= b for y in {x, x.lower(), x.upper()})


# ---------------------------------------------------------------------------------- the NFA


@dataclass
class _Nfa:
    # per state: a character test (a consuming state) or an assertion ("^", "$", "b", "B"),
    # its consuming transition, and its epsilon transitions
    tests: list[CharTest | None] = field(default_factory=list)
    asserts: list[str | None] = field(default_factory=list)
    nexts: list[int] = field(default_factory=list)
    eps: list[list[int]] = field(default_factory=list)

    def state(self, test: CharTest | None = None, at: str | None = None) -> int:
        if len(self.tests) >= MAX_STATES:
            raise PatternError(f"pattern too complex (more than {MAX_STATES} states)")
        self.tests.append(test)
        self.asserts.append(at)
        self.nexts.append(-1)
        self.eps.append([])
        return len(self.tests) - 1

    def build(self, node: Node) -> tuple[int, int]:
        """(entry, exit) of a fragment; the exit is a plain epsilon state."""
        kind = node[0]
        if kind == "char":
            test = node[1]
            assert callable(test)
            s, e = self.state(test), self.state()
            self.nexts[s] = e
            return s, e
        if kind == "at":
            s, e = self.state(at=str(node[1])), self.state()
            self.eps[s].append(e)
            return s, e
        if kind == "seq":
            s = cur = self.state()
            items = node[1]
            assert isinstance(items, list)
            for item in items:
                a, b = self.build(item)
                self.eps[cur].append(a)
                cur = b
            return s, cur
        if kind == "alt":
            s, e = self.state(), self.state()
            branches = node[1]
            assert isinstance(branches, list)
            for br in branches:
                a, b = self.build(br)
                self.eps[s].append(a)
                self.eps[b].append(e)
            return s, e
        assert kind == "rep"
        _, inner, lo, hi = node
        assert isinstance(inner, tuple) and isinstance(lo, int)
        s = cur = self.state()
        for _ in range(lo):
            a, b = self.build(inner)
            self.eps[cur].append(a)
            cur = b
        if hi is None:
            a, b = self.build(inner)
            loop = self.state()
            self.eps[cur].append(loop)
            self.eps[loop].append(a)
            self.eps[b].append(loop)
            cur = loop
        else:
            assert isinstance(hi, int)
            end = self.state()
            for _ in range(hi - lo):
                a, b = self.build(inner)
                self.eps[cur].extend((a, end))
                cur = b
            self.eps[cur].append(end)
            cur = end
        return s, cur


def _holds(at: str, text: str, pos: int) -> bool:
    before = text[pos - 1] if pos > 0 else ""
    after = text[pos] if pos < len(text) else ""
    if at == "^":
        return before in ("", "\n")
    if at == "$":
        return after in ("", "\n")
    edge = (before != "" and _is_word(before)) != (after != "" and _is_word(after))
    return edge if at == "b" else not edge


@dataclass(frozen=True)
class Pattern:
    """A compiled message pattern: ``search(text)`` says whether it matches anywhere."""

    source: str
    _nfa: _Nfa = field(compare=False, repr=False)
    _start: int = field(compare=False, repr=False)
    _accept: int = field(compare=False, repr=False)

    def _closure(self, states: list[int], text: str, pos: int) -> set[int]:
        seen: set[int] = set()
        stack = list(states)
        nfa = self._nfa
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            at = nfa.asserts[s]
            if at is not None and not _holds(at, text, pos):
                continue
            stack.extend(nfa.eps[s])
        return seen

    def search(self, text: str) -> bool:
        nfa, accept = self._nfa, self._accept
        cur = self._closure([self._start], text, 0)
        for i, ch in enumerate(text):
            if accept in cur:
                return True
            nxt = [nfa.nexts[s] for s in cur if (t := nfa.tests[s]) is not None and t(ch)]
            nxt.append(self._start)  # a match may start at the next position
            cur = self._closure(nxt, text, i + 1)
        return accept in cur


def compile_pattern(source: str) -> Pattern:
    """Compile ``source`` or raise :class:`PatternError` saying what is not supported."""
    if not source:
        raise PatternError("the pattern is empty")
    if len(source) > MAX_PATTERN:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN} characters")
    tree = _Parser(source).parse()
    nfa = _Nfa()
    start, accept = nfa.build(tree)
    return Pattern(source, nfa, start, accept)


def check_pattern(source: str) -> str:
    """pydantic validator: the pattern compiles (the API server cannot check regexes)."""
    try:
        compile_pattern(source)
    except PatternError as e:
        raise ValueError(f"invalid messagePattern: {e}") from None
    return source
