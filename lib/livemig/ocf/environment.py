"""The Pacemaker environment of one agent invocation.

Reads ``OCF_RESKEY_*`` (parameters), ``OCF_RESKEY_CRM_meta_*`` (meta
attributes: timeout and interval in milliseconds), ``OCF_RESOURCE_INSTANCE``
and ``OCF_CHECK_LEVEL``. Built from a mapping, so tests pass a dict instead of
patching ``os.environ``.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

_PARAM_PREFIX = "OCF_RESKEY_"
_META_PREFIX = "OCF_RESKEY_CRM_meta_"


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
                 raw: Optional[Mapping[str, str]] = None) -> None:
        self.action = action
        self.params: Dict[str, str] = params if params is not None else {}
        self.meta: Dict[str, str] = meta if meta is not None else {}
        self.resource_instance = resource_instance
        self.check_level = check_level
        self.raw: Mapping[str, str] = raw if raw is not None else {}

    @classmethod
    def from_environ(cls, action: str, environ: Optional[Mapping[str, str]] = None) -> OCFEnvironment:
        env = dict(os.environ if environ is None else environ)
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
                   check_level=level, raw=env)

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

    def meta_value(self, name: str) -> Optional[str]:
        return self.meta.get(name)

    @property
    def node_name(self) -> Optional[str]:
        return self.meta.get("on_node") or self.raw.get("OCF_RESKEY_CRM_meta_on_node") or None
