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
from typing import Any, Dict, Mapping, Optional

DEFAULT_RSCTMP = "/run/resource-agents"
MAX_STATE_BYTES = 64 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


class StateFile:
    def __init__(self, agent: str, instance: str, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        directory = env.get("HA_RSCTMP") or DEFAULT_RSCTMP
        name = _SAFE.sub("_", f"livemig-{agent}-{instance}")[:200]
        self.path = os.path.join(directory, name + ".json")

    def _trusted_directory(self) -> bool:
        """Only a directory another user cannot plant files in (or a sticky one) is used."""
        try:
            st = os.stat(os.path.dirname(self.path))
        except OSError:
            return False
        writable_by_others = st.st_mode & 0o022
        return st.st_uid in (0, os.geteuid()) and (not writable_by_others or bool(st.st_mode & 0o1000))

    def load(self) -> Dict[str, Any]:
        """The remembered state; {} for anything missing, corrupt or not trustworthy.

        The file is not followed through a symlink and must be a regular file
        owned by this user and writable by no one else: stop acts on what is
        remembered here, so it must be what this agent wrote.
        """
        from livemig.files import FileUnreadable, read_owned_file

        try:
            data = json.loads(read_owned_file(self.path, MAX_STATE_BYTES).decode("utf-8"))
        except (FileUnreadable, ValueError):
            return {}
        if not self._trusted_directory():
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: Mapping[str, Any]) -> bool:
        """Write ``data``; False (and nothing raised) if the directory is not writable."""
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            if not self._trusted_directory():
                return False
            from livemig.files import replace_file

            replace_file(self.path, json.dumps(dict(data), sort_keys=True), prefix=".tmp-")
        except OSError:
            return False
        return True

    def update(self, **changes: Any) -> Dict[str, Any]:
        data = self.load()
        data.update(changes)
        self.save(data)
        return data
