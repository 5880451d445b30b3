"""Declarative parameters and actions, and the meta-data generated from them.

The generated XML is valid against resource-agents' ``ra-api-1.dtd`` (what
ocf-tester checks) and ``metadata.rng``: one longdesc and shortdesc with
``lang``, content types limited to string/integer/boolean (the types both
schemas accept), a timeout on every action. All text is XML-escaped.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from livemig.ocf.errors import ConfigurationError

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n"})


def parse_boolean(name: str, value: str) -> bool:
    """OCF-style boolean (what crm_is_true accepts), or ConfigurationError."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"parameter {name}={value!r} is not a boolean (use true or false)")


def parse_integer(name: str, value: str, minimum: Optional[int] = None,
                  maximum: Optional[int] = None) -> int:
    text = value.strip()
    # ASCII digits with at most one sign: str.isdigit() also accepts "²" and int() "--5" fails.
    if not _INTEGER.match(text) or len(text) > 19:
        raise ConfigurationError(f"parameter {name}={value!r} is not an integer")
    number = int(text)
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"parameter {name}={number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigurationError(f"parameter {name}={number} is above the maximum {maximum}")
    return number


# Plain classes rather than dataclasses: every action imports this module, and the
# dataclass machinery (inspect, code generation) costs a monitor ~6 ms of CPU.


class Parameter:
    """One agent parameter (``OCF_RESKEY_<name>``).

    ``choices`` restricts a string to a set of words (checked by
    :meth:`parse`; published in longdesc, since the DTD has no select type).
    """

    __slots__ = ("name", "shortdesc", "longdesc", "type", "default", "required", "unique", "choices",
                 "minimum", "maximum", "max_length")

    def __init__(self, name: str, shortdesc: str, longdesc: str, type: str = "string",  # noqa: A002
                 default: Optional[str] = None, required: bool = False, unique: bool = False,
                 choices: Tuple[str, ...] = (), minimum: Optional[int] = None, maximum: Optional[int] = None,
                 max_length: int = 4096) -> None:
        self.name = name
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.type = type  # string | integer | boolean
        self.default = default
        self.required = required
        self.unique = unique
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.max_length = max_length

    def __repr__(self) -> str:
        return f"Parameter({self.name!r})"

    def parse(self, raw: Optional[str]) -> object:
        """The typed value of ``raw`` (or of the default when unset)."""
        value = self.default if raw is None else raw
        if value is None:
            if self.required:
                raise ConfigurationError(f"required parameter {self.name} is not set")
            return None
        if len(value) > self.max_length:
            raise ConfigurationError(f"parameter {self.name} is longer than {self.max_length} characters")
        if "\x00" in value:
            raise ConfigurationError(f"parameter {self.name} contains a NUL byte")
        if self.type == "boolean":
            return parse_boolean(self.name, value)
        if self.type == "integer":
            if value.strip() == "" and not self.required:
                return None
            return parse_integer(self.name, value, self.minimum, self.maximum)
        if self.choices and value not in self.choices:
            raise ConfigurationError(
                f"parameter {self.name}={value!r} is not one of: {', '.join(self.choices)}")
        if self.required and value.strip() == "":
            raise ConfigurationError(f"required parameter {self.name} is empty")
        return value


class Action:
    __slots__ = ("name", "timeout", "interval", "depth", "role")

    def __init__(self, name: str, timeout: int, interval: Optional[int] = None, depth: Optional[int] = None,
                 role: Optional[str] = None) -> None:
        self.name = name
        self.timeout = timeout  # seconds, the advised minimum
        self.interval = interval
        self.depth = depth
        self.role = role

    def __repr__(self) -> str:
        return f"Action({self.name!r}, timeout={self.timeout})"


class AgentMetadata:
    def __init__(self, name: str, version: str, shortdesc: str, longdesc: str,
                 parameters: Sequence[Parameter] = (), actions: Sequence[Action] = ()) -> None:
        self.name = name
        self.version = version
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.parameters = list(parameters)
        self.actions = list(actions)

    def parameter(self, name: str) -> Parameter:
        for param in self.parameters:
            if param.name == name:
                return param
        raise KeyError(name)

    def parse_params(self, raw: Dict[str, str]) -> Dict[str, object]:
        """Typed values for every declared parameter; ConfigurationError on the first bad one."""
        return {p.name: p.parse(raw.get(p.name)) for p in self.parameters}

    def to_xml(self) -> str:
        # Imported here: xml.sax.saxutils pulls in urllib.request, http.client, email and ssl
        # (~20 ms), which no action but meta-data needs.
        from xml.sax.saxutils import escape, quoteattr  # nosec B406 # escaping output, nothing is parsed

        lines: List[str] = [
            '<?xml version="1.0"?>',
            '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">',
            f"<resource-agent name={quoteattr(self.name)} version={quoteattr(self.version)}>",
            "<version>1.1</version>",
            f'<longdesc lang="en">{escape(self.longdesc)}</longdesc>',
            f'<shortdesc lang="en">{escape(self.shortdesc)}</shortdesc>',
            "<parameters>",
        ]
        for p in self.parameters:
            longdesc = p.longdesc
            if p.choices:
                longdesc += f" Allowed values: {', '.join(p.choices)}."
            default = "" if p.default is None else f" default={quoteattr(p.default)}"
            lines += [
                f'<parameter name={quoteattr(p.name)} unique="{int(p.unique)}" required="{int(p.required)}">',
                f'<longdesc lang="en">{escape(longdesc)}</longdesc>',
                f'<shortdesc lang="en">{escape(p.shortdesc)}</shortdesc>',
                f'<content type="{p.type}"{default}/>',
                "</parameter>",
            ]
        lines += ["</parameters>", "<actions>"]
        for a in self.actions:
            attrs = f'name="{a.name}" timeout="{a.timeout}s"'
            if a.interval is not None:
                attrs += f' interval="{a.interval}s"'
            if a.depth is not None:
                attrs += f' depth="{a.depth}"'
            if a.role is not None:
                attrs += f' role="{a.role}"'
            lines.append(f"<action {attrs}/>")
        lines += ["</actions>", "</resource-agent>", ""]
        return "\n".join(lines)

