"""The Pacemaker environment of one agent invocation.

Reads ``OCF_RESKEY_*`` (parameters), ``OCF_RESKEY_CRM_meta_*`` (meta
attributes: timeout and interval in milliseconds), ``OCF_RESOURCE_INSTANCE``
and ``OCF_CHECK_LEVEL``. Built from a mapping, so tests pass a dict instead of
patching ``os.environ``.

Values are text. Python hands bytes that are not valid UTF-8 to the program as
lone surrogates (``surrogateescape``), which fail wherever the text is encoded
again (libvirt, lxml, a log file) far from where they came in. Here every
``OCF_*`` variable that is not valid text is recorded in
:attr:`OCFEnvironment.invalid` (for the dispatcher: a configuration error, or a
warning for stop and monitor) and read with U+FFFD in place of each such byte,
so that nothing deeper ever sees a surrogate. Pacemaker cannot pass such a
value (the CIB is XML, always valid UTF-8): it comes from a hand-made
environment.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

_PARAM_PREFIX = "OCF_RESKEY_"
_META_PREFIX = "OCF_RESKEY_CRM_meta_"
_OCF_PREFIX = "OCF_"


def is_text(value: str) -> bool:
    """True unless ``value`` holds a lone surrogate (a byte that was not valid UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: str) -> str:
    """``value`` safe to write anywhere: each undecodable byte shown as ``\\xNN`` (other surrogates ``\\uNNNN``)."""
    if is_text(value):
        return value
    out = []
    for char in value:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def repaired(value: str) -> str:
    """``value`` with U+FFFD in place of each lone surrogate: valid text, visibly not what was given."""
    if is_text(value):
        return value
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in value)


def _int_or_none(value: Optional[str]) -> Optional[int]:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class OCFEnvironment:
    def __init__(self, action: str, params: Optional[Dict[str, str]] = None,
                 meta: Optional[Dict[str, str]] = None, resource_instance: str = "", check_level: int = 0,
                 raw: Optional[Mapping[str, str]] = None, invalid: Optional[Dict[str, str]] = None) -> None:
        self.action = action
        self.params: Dict[str, str] = params if params is not None else {}
        self.meta: Dict[str, str] = meta if meta is not None else {}
        self.resource_instance = resource_instance
        self.check_level = check_level
        self.raw: Mapping[str, str] = raw if raw is not None else {}
        #: ``OCF_*`` variables that were not valid text: name -> the value as given, printable
        self.invalid: Dict[str, str] = invalid if invalid is not None else {}

    @classmethod
    def from_environ(cls, action: str, environ: Optional[Mapping[str, str]] = None) -> OCFEnvironment:
        env: Dict[str, str] = {}
        invalid: Dict[str, str] = {}
        for key, value in (os.environ if environ is None else environ).items():
            if key.startswith(_OCF_PREFIX) and not (is_text(key) and is_text(value)):
                invalid[printable(key)] = printable(value)
                if not is_text(key):
                    continue  # a name that is not text names no parameter
                value = repaired(value)
            env[key] = value
        params: Dict[str, str] = {}
        meta: Dict[str, str] = {}
        for key, value in env.items():
            if key.startswith(_META_PREFIX):
                meta[key[len(_META_PREFIX):]] = value
            elif key.startswith(_PARAM_PREFIX):
                params[key[len(_PARAM_PREFIX):]] = value
        level = _int_or_none(env.get("OCF_CHECK_LEVEL"))
        if level is None:
            level = _int_or_none(meta.get("OCF_CHECK_LEVEL")) or 0
        instance = env.get("OCF_RESOURCE_INSTANCE") or meta.get("clone_name") or "undef"
        return cls(action=action, params=params, meta=meta, resource_instance=instance,
                   check_level=level, raw=env, invalid=invalid)

    def invalid_reason(self) -> str:
        """What :attr:`invalid` holds, as an exit reason ('' when everything is text)."""
        parts = []
        for name, value in sorted(self.invalid.items()):
            if name.startswith(_META_PREFIX):
                what = f"meta attribute {name[len(_META_PREFIX):]}"
            elif name.startswith(_PARAM_PREFIX):
                what = f"parameter {name[len(_PARAM_PREFIX):]}"
            else:
                what = name
            parts.append(f"{what}='{value}' is not valid UTF-8 text")
        return "; ".join(parts)

    @property
    def timeout_ms(self) -> Optional[int]:
        """The operation timeout in milliseconds, when Pacemaker says."""
        value = _int_or_none(self.meta.get("timeout"))
        return value if value is not None and value > 0 else None

    @property
    def interval_ms(self) -> int:
        return _int_or_none(self.meta.get("interval")) or 0

    @property
    def is_probe(self) -> bool:
        """A one-shot monitor (interval 0): Pacemaker asking "is it running here?"."""
        return self.action in ("monitor", "status") and self.interval_ms == 0

    @property
    def node_name(self) -> Optional[str]:
        return self.meta.get("on_node") or self.raw.get("OCF_RESKEY_CRM_meta_on_node") or None
