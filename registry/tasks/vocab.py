"""Identifiers, string contents and code shapes that task templates draw from.

The word lists are fixed in this file (not mined at run time) so a task is the
same on every machine. They mimic names common in standard-library code.
"""

from __future__ import annotations

import random

NAMES = (
    "name",
    "value",
    "data",
    "result",
    "path",
    "key",
    "item",
    "items",
    "line",
    "lines",
    "text",
    "msg",
    "count",
    "index",
    "size",
    "total",
    "node",
    "nodes",
    "args",
    "kwargs",
    "obj",
    "func",
    "module",
    "prefix",
    "suffix",
    "parts",
    "buf",
    "chunk",
    "offset",
    "start",
    "end",
    "level",
    "mode",
    "fmt",
    "source",
    "target",
    "parent",
    "child",
    "entry",
    "entries",
    "config",
    "options",
    "params",
    "header",
    "headers",
    "body",
    "status",
    "code",
    "errors",
    "token",
    "tokens",
    "stream",
    "fp",
    "filename",
    "dirname",
    "root",
    "base",
    "url",
    "host",
    "port",
    "timeout",
    "delay",
    "limit",
    "width",
    "height",
    "state",
    "context",
    "handler",
    "callback",
    "event",
    "record",
    "records",
    "row",
    "rows",
    "col",
    "field",
    "fields",
    "attr",
    "tag",
    "label",
    "title",
    "user",
    "group",
    "owner",
    "address",
    "response",
    "request",
)

CLASS_NAMES = (
    "Parser",
    "Handler",
    "Reader",
    "Writer",
    "Config",
    "Record",
    "Node",
    "Client",
    "Server",
    "Request",
    "Response",
    "Session",
    "Buffer",
    "Token",
    "Entry",
    "Cache",
    "Loader",
    "Logger",
    "Formatter",
    "Stream",
    "Channel",
    "Queue",
    "Worker",
    "Task",
    "Event",
    "Timer",
    "Table",
)

FUNCTION_NAMES = (
    "parse",
    "load",
    "dump",
    "read",
    "write",
    "get",
    "update",
    "process",
    "handle",
    "run",
    "check",
    "format",
    "render",
    "build",
    "make",
    "create",
    "open_file",
    "close",
    "reset",
    "convert",
    "encode",
    "decode",
    "split",
    "join",
    "find",
    "search",
    "match",
    "compile",
    "validate",
    "normalize",
    "resolve",
    "register",
    "lookup",
    "fetch",
    "send",
    "receive",
)

WORDS = (
    "hello",
    "world",
    "error",
    "warning",
    "invalid",
    "value",
    "missing",
    "file",
    "not",
    "found",
    "the",
    "name",
    "must",
    "be",
    "a",
    "string",
    "cannot",
    "open",
    "read",
    "write",
    "unknown",
    "option",
    "expected",
    "got",
    "default",
    "test",
    "data",
    "done",
    "failed",
    "start",
    "stop",
    "line",
    "end",
    "of",
    "input",
    "output",
    "key",
    "type",
    "mode",
    "path",
    "utf",
    "ascii",
    "config",
    "section",
    "user",
    "server",
    "closed",
    "ready",
    "empty",
)

INDENTS = ("", "    ", "        ")


def pick_name(rng: random.Random, *, exclude: tuple[str, ...] = ()) -> str:
    """Draw an identifier, optionally different from the names in `exclude`."""
    choices = [name for name in NAMES if name not in exclude]
    return rng.choice(choices)


def pick_names(rng: random.Random, n: int) -> list[str]:
    """Draw `n` distinct identifiers."""
    return rng.sample(NAMES, n)


def pick_words(rng: random.Random, low: int = 1, high: int = 4) -> str:
    """Draw a short space-separated phrase for a string literal."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def pick_number(rng: random.Random) -> str:
    return str(rng.choice((0, 1, 2, 3, 4, 5, 8, 10, 16, 32, 64, 100, 255, 1024)))


def preamble(rng: random.Random) -> str:
    """Return zero to two plausible lines that open a function or module body.

    The returned text ends with a newline (or is empty). The lines never contain a
    quote, bracket or keyword that a task tests, so they add context without
    leaking the answer.
    """
    options = [
        "",
        f"def {rng.choice(FUNCTION_NAMES)}(self):\n",
        f"def {rng.choice(FUNCTION_NAMES)}({pick_name(rng)}):\n",
        f"import os\n\n\ndef {rng.choice(FUNCTION_NAMES)}({pick_name(rng)}):\n",
        f"class {rng.choice(CLASS_NAMES)}:\n    def {rng.choice(FUNCTION_NAMES)}(self):\n",
    ]
    return rng.choice(options)


def body_indent(header: str) -> str:
    """Return the indentation of the statement that follows `header`."""
    if not header:
        return ""
    last_line = header.rstrip("\n").split("\n")[-1]
    leading = len(last_line) - len(last_line.lstrip(" "))
    return " " * (leading + 4) if last_line.endswith(":") else " " * leading


def filler_statement(rng: random.Random, indent: str, *, avoid: tuple[str, ...] = ()) -> str:
    """Return one neutral assignment line at `indent` that uses no name in `avoid`."""
    name = pick_name(rng, exclude=avoid)
    other = pick_name(rng, exclude=avoid + (name,))
    shapes = [
        f"{indent}{name} = {pick_number(rng)}\n",
        f"{indent}{name} = {other}\n",
        f"{indent}{name} = len({other})\n",
        f"{indent}{name} = {other} + {pick_number(rng)}\n",
    ]
    return rng.choice(shapes)
