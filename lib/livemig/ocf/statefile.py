"""Small per-resource state kept between invocations.

Stored as JSON under ``HA_RSCTMP`` (``/run/resource-agents`` by default, a
tmpfs cleared at boot: what is remembered there is only true until the node
reboots, which is exactly the lifetime of a running VM). Written atomically;
a missing or corrupt file reads as empty, never as an error.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Dict, Mapping, Optional

DEFAULT_RSCTMP = "/run/resource-agents"
_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


class StateFile:
    def __init__(self, agent: str, instance: str, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        directory = env.get("HA_RSCTMP") or DEFAULT_RSCTMP
        name = _SAFE.sub("_", f"livemig-{agent}-{instance}")[:200]
        self.path = os.path.join(directory, name + ".json")

    def load(self) -> Dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: Mapping[str, Any]) -> bool:
        """Write ``data``; False (and nothing raised) if the directory is not writable."""
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(dict(data), fh, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            return False
        return True

    def update(self, **changes: Any) -> Dict[str, Any]:
        data = self.load()
        data.update(changes)
        self.save(data)
        return data
