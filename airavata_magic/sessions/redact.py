"""Keeping secrets out of recorded sessions.

Three kinds of secret are replaced by a marker, in code and in outputs (CONTRACT.md):

- values this process knows are secret: what ``getpass()`` returned (``known_secrets.known()``),
  plus values the recorder learned from the notebook itself (see ``Redactor.learn``);
- private key blocks (``-----BEGIN ... PRIVATE KEY-----`` up to the matching END line);
- values assigned to secret-looking names (``password``, ``token``, ``secret``, ``api_key``, ...),
  whether as ``name = "..."``, ``f(name="...")``, ``{"name": "..."}``, or ``name=...`` in text.

In code, a string literal assigned to a secret name becomes ``"<redacted:NAME>"`` so that an
export can turn it back into a prompt or an environment lookup (``values.secret``).
"""
from __future__ import annotations

import ast
import io
import re
import threading
import tokenize
from typing import Any, Iterable

from .. import known_secrets

MARK = "<redacted>"
CODE_MARK_RE = re.compile(r"""(?P<q>['"])<redacted:(?P<name>[A-Za-z_][A-Za-z0-9_.-]{0,63})>(?P=q)""")
MIN_SECRET_LEN = 3  # shorter values are too likely to occur by chance in unrelated text

# Name components that mark a secret. Names are split at '_', '-', '.', and camelCase, so
# `github_token`, `apiKey`, `DB_PASSWORD` match while `tokenizer` and `max_tokens` do not.
_SECRET_WORDS = {"password", "passwd", "passphrase", "pwd", "token", "secret", "apikey", "credential",
                 "credentials", "privatekey", "accesskey", "secretkey", "authtoken", "bearer"}
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                 ("auth", "token"), ("client", "secret")}
_PYTHON_CELL_MAGICS = [["run_on"], ["time"], ["timeit"], ["capture"], ["prun"]]
_SPLIT_RE = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")

_KEY_BLOCK_RE = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL)
# `name = value` / `name: value` / `"name": "value"` in free text (outputs, magics, shell lines).
_TEXT_ASSIGN_RE = re.compile(
    r"""(?P<key>["']?(?P<name>[A-Za-z_][A-Za-z0-9_.-]{0,63})["']?)(?P<sep>[ \t]*[:=][ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^\s"',;}\])]+)""")


def is_secret_name(name: str) -> bool:
    """Does ``name`` (a variable, key or flag name) look like it holds a secret?"""
    parts = [p.lower() for p in _SPLIT_RE.split(name.strip("-'\"")) if p]
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(parts, parts[1:]))


def _redact_key_blocks(text: str) -> str:
    return _KEY_BLOCK_RE.sub(lambda m: f"-----BEGIN {m.group(1)}PRIVATE KEY-----{MARK}-----END {m.group(1)}PRIVATE KEY-----", text)


class Redactor:
    """Redacts one session's code and outputs; remembers secret values it learns on the way.

    Thread-safe: the recorder learns on the kernel's main thread and redacts on its listener thread.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._learned: set[str] = {v for v in extra if v}
        self._pattern: re.Pattern[str] | None = None
        self._pattern_for: frozenset[str] = frozenset()

    # -- what is secret ----------------------------------------------------------------------------
    def learn(self, value: Any) -> None:
        """Treat ``value`` (a str) as secret from now on, wherever it appears."""
        if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
            with self._lock:
                self._learned.add(value)

    def learn_from_namespace(self, code: str, namespace: dict[str, Any]) -> None:
        """After a cell ran: learn the str values of names it assigned that look secret or came
        from ``getpass`` (so ``pw = getpass()`` followed by ``print(pw)`` is redacted)."""
        for name in _assigned_secret_names(code):
            self.learn(namespace.get(name))

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._learned) | known_secrets.known()

    def _values_re(self) -> re.Pattern[str] | None:
        vals = frozenset(v for v in self.values() if len(v) >= MIN_SECRET_LEN)
        if vals != self._pattern_for:
            # Longest first, so a secret that contains another is replaced whole.
            alts = sorted(vals, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alts))) if alts else None
            self._pattern_for = vals
        return self._pattern

    # -- redaction ---------------------------------------------------------------------------------
    def text(self, text: str) -> str:
        """Redact free text: known values, key blocks, and ``name=value`` pairs with secret names."""
        if not text:
            return text
        pat = self._values_re()
        if pat is not None:
            text = pat.sub(MARK, text)
        if "PRIVATE KEY-----" in text:
            text = _redact_key_blocks(text)
        return _TEXT_ASSIGN_RE.sub(self._text_assign, text) if _maybe_secret(text) else text

    def _text_assign(self, m: re.Match[str]) -> str:
        if not is_secret_name(m.group("name")) or MARK in m.group("value"):
            return m.group(0)
        value = m.group("value")
        if value[:1] in "\"'":
            self.learn(_unquote(value))
            return f"{m.group('key')}{m.group('sep')}{value[0]}{MARK}{value[0]}"
        self.learn(value)
        return f"{m.group('key')}{m.group('sep')}{MARK}"

    def code(self, source: str) -> str:
        """Redact a cell's source. String literals assigned to secret names become
        ``"<redacted:NAME>"`` (and their values are learned); then the text rules apply."""
        source = self._code_literals(source)
        pat = self._values_re()
        if pat is not None:
            source = pat.sub(MARK, source)
        if "PRIVATE KEY-----" in source:
            source = _redact_key_blocks(source)
        return source

    def _code_literals(self, source: str) -> str:
        if not _maybe_secret(source):
            return source
        first = source.lstrip().split("\n", 1)[0]
        if first.startswith("%%") and first[2:].split(None, 1)[:1] not in _PYTHON_CELL_MAGICS:
            return _TEXT_ASSIGN_RE.sub(self._text_assign, source)  # %%bash and friends: not Python
        lines = source.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.lstrip().startswith(("!", "%")) and not line.lstrip().startswith("%%"):
                lines[i] = _TEXT_ASSIGN_RE.sub(self._text_assign, line)  # shell and magic lines
        source = "".join(lines)
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (tokenize.TokenError, IndentationError, SyntaxError):
            # Not Python (a %%bash cell, a magic with odd quoting): redact it as text.
            return _TEXT_ASSIGN_RE.sub(self._text_assign, source)
        lines = source.splitlines(keepends=True)
        edits: list[tuple[int, int, int, str]] = []  # (row, col_start, col_end, replacement)
        for i, tok in enumerate(tokens):
            name = _token_name(tok)
            if name is None or not is_secret_name(name):
                continue
            # name [ ] [: annotation] = "literal"   or   "name": "literal"   or   name="literal"
            j = i + 1
            while j < len(tokens) and tokens[j].type == tokenize.OP and tokens[j].string == "]":
                j += 1
            if j < len(tokens) and tokens[j].string == ":" and j + 2 < len(tokens) \
                    and tokens[j + 1].type == tokenize.NAME and tokens[j + 2].string == "=":
                j += 2  # an annotation, `password: str = "..."`
            if j + 1 >= len(tokens) or tokens[j].string not in ("=", ":", ":="):
                continue
            lit = tokens[j + 1]
            if lit.type != tokenize.STRING or lit.start[0] != lit.end[0]:
                continue
            try:
                value = ast.literal_eval(lit.string)
            except (ValueError, SyntaxError):
                continue
            if not isinstance(value, str) or value.startswith("<redacted"):
                continue
            self.learn(value)
            ident = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "secret"
            edits.append((lit.start[0], lit.start[1], lit.end[1], repr(f"<redacted:{ident}>")))
        for row, c0, c1, rep in reversed(edits):
            line = lines[row - 1]
            lines[row - 1] = line[:c0] + rep + line[c1:]
        return _TEXT_ASSIGN_RE.sub(self._text_assign_unquoted_only, "".join(lines))

    def _text_assign_unquoted_only(self, m: re.Match[str]) -> str:
        # In code, only magic/shell style `--token=abc` or `TOKEN=abc` outside string literals
        # is left for the text rule; a quoted value was handled (or is not a literal assignment).
        value = m.group("value")
        if value[:1] in "\"'" or not is_secret_name(m.group("name")) or MARK in value:
            return m.group(0)
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*(\(.*)?", value):
            return m.group(0)  # `token = make_token()`, `password=pw`: code, not a value
        return self._text_assign(m)

    def output(self, output: dict[str, Any]) -> dict[str, Any]:
        """Redact one nbformat output dict (stream, display_data, execute_result, error)."""
        kind = output.get("output_type")
        out = dict(output)
        if kind == "stream":
            out["text"] = self.text(out.get("text", ""))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            out["data"] = self.data(out.get("data") or {})
        elif kind == "error":
            out["evalue"] = self.text(out.get("evalue", ""))
            out["traceback"] = [self.text(line) for line in out.get("traceback", [])]
        return out

    def data(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Redact a MIME bundle (``display_data``/``update_display_data`` data)."""
        return {mime: self._data(mime, v) for mime, v in (bundle or {}).items()}

    def _data(self, mime: str, value: Any) -> Any:
        if mime.startswith("image/") and mime != "image/svg+xml":
            return value  # base64 pixels
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(v, str) and isinstance(k, str) and is_secret_name(k):
                    self.learn(v)
                    out[k] = MARK
                else:
                    out[k] = self._walk(v)
            return out
        return value


def _maybe_secret(text: str) -> bool:
    """Cheap pre-check before the regex/tokenizer pass: does any secret word occur at all?"""
    low = text.lower()
    return any(w in low for w in ("pass", "pwd", "token", "secret", "key", "credential", "bearer"))


def _token_name(tok: tokenize.TokenInfo) -> str | None:
    if tok.type == tokenize.NAME:
        return tok.string
    if tok.type == tokenize.STRING:
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            return None
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


def _unquote(value: str) -> str:
    try:
        out = ast.literal_eval(value)
        return out if isinstance(out, str) else value[1:-1]
    except (ValueError, SyntaxError):
        return value[1:-1]


def _assigned_secret_names(code: str) -> set[str]:
    """Top-level names a cell assigned that look secret or were assigned from ``getpass``."""
    try:
        tree = ast.parse(_python_of(code))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            from_getpass = _calls_getpass(node.value)
            for t in targets:
                if isinstance(t, ast.Name) and (from_getpass or is_secret_name(t.id)):
                    names.add(t.id)
    return names


def _calls_getpass(node: ast.AST | None) -> bool:
    if node is None:
        return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if (isinstance(f, ast.Name) and f.id == "getpass") or (isinstance(f, ast.Attribute) and f.attr == "getpass"):
                return True
    return False


def _python_of(code: str) -> str:
    """IPython source -> plain Python (magics become calls), keeping line numbers."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(code)
    except Exception:  # noqa: BLE001 - any IPython syntax it cannot transform is not Python
        return code
