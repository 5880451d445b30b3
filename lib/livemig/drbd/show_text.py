"""The text of DRBD 8.x ``drbdsetup <minor|res> show``: DRBD's configuration syntax.

Two shapes occur: 8.0-8.3 print the sections of one device at the top level
(``disk {}``, ``net {}``, ``syncer {}``, ``protocol C;``, ``_this_host {}``),
8.4 wraps them in ``resource <name> { ... }`` with ``volume N {}`` inside
``_this_host``. The device is ``"/dev/drbdN"`` (8.0) or ``minor N`` (8.3+).
Values marked ``_is_default`` are kept; comments (``# bytes``) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from livemig.drbd.state import DrbdStateError

_TOKEN = re.compile(r'\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|([{};])|([^\s{};"#]+)')
_DEVICE_NODE = re.compile(r"^/dev/drbd(\d+)$")


@dataclass
class ConfigBlock:
    """``words { statements; blocks {} }``: a section of DRBD's configuration syntax."""

    words: Tuple[str, ...]
    statements: List[Tuple[str, ...]] = field(default_factory=list)
    blocks: List[ConfigBlock] = field(default_factory=list)

    def block(self, *words: str) -> Optional[ConfigBlock]:
        for child in self.blocks:
            if child.words[: len(words)] == words:
                return child
        return None

    def options(self) -> Dict[str, str]:
        """``key value [_is_default];`` statements as key -> value."""
        return {s[0]: s[1] for s in self.statements if len(s) >= 2}

    def statement(self, key: str) -> Optional[Tuple[str, ...]]:
        for s in self.statements:
            if s and s[0] == key:
                return s[1:]
        return None


@dataclass(frozen=True)
class ShowDevice:
    """What 8.x ``drbdsetup show`` says about one device."""

    resource: Optional[str]
    minor: Optional[int]
    volume: Optional[int]
    protocol: Optional[str]
    disk: Optional[str]
    meta_disk: Optional[str]
    local_address: Optional[str]
    peer_address: Optional[str]
    net: Dict[str, str]
    disk_options: Dict[str, str]

    @property
    def allow_two_primaries(self) -> Optional[bool]:
        """8.x prints only non-default options: absent means the default, "no"."""
        value = self.net.get("allow-two-primaries")
        if value is not None:
            return value == "yes"
        return False if self.net else None


def _tokens(text: str) -> Iterator[str]:
    pos = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None:
            raise DrbdStateError(f"drbdsetup show: cannot read at offset {pos}")
        pos = found.end()
        if found.group(1) is not None:
            yield found.group(1)
        elif found.group(2) is not None:
            yield found.group(2)
        elif found.group(3) is not None:
            yield found.group(3)


def parse_config_text(text: str) -> ConfigBlock:
    """Parse DRBD configuration syntax into nested blocks under an unnamed root."""
    root = ConfigBlock(words=())
    stack = [root]
    words: List[str] = []
    for word in _tokens(text):
        if word == "{":
            child = ConfigBlock(words=tuple(words))
            stack[-1].blocks.append(child)
            stack.append(child)
            words = []
        elif word == "}":
            if words or len(stack) == 1:
                raise DrbdStateError("drbdsetup show: unbalanced braces")
            stack.pop()
        elif word == ";":
            if words:
                stack[-1].statements.append(tuple(words))
            words = []
        else:
            words.append(word)
    if len(stack) != 1 or words:
        raise DrbdStateError("drbdsetup show: output ends inside a section")
    return root


def parse_show_text(text: str) -> List[ShowDevice]:
    """The devices described by 8.x ``drbdsetup show`` output."""
    root = parse_config_text(text)
    resources = [b for b in root.blocks if b.words[:1] == ("resource",)]
    if not resources:
        return [_device(root, None, root.block("_this_host"), None)]
    devices: List[ShowDevice] = []
    for res in resources:
        name = res.words[1] if len(res.words) > 1 else None
        this_host = res.block("_this_host")
        volumes = [b for b in this_host.blocks if b.words[:1] == ("volume",)] if this_host else []
        if not volumes:
            devices.append(_device(res, name, this_host, None))
        for vol in volumes:
            devices.append(_device(res, name, this_host, vol))
    return devices


def _device(section: ConfigBlock, name: Optional[str], this_host: Optional[ConfigBlock],
            volume: Optional[ConfigBlock]) -> ShowDevice:
    holder = volume or this_host
    device = holder.statement("device") if holder else None
    minor: Optional[int] = None
    if device:
        if device[0] == "minor" and len(device) > 1 and device[1].isdigit():
            minor = int(device[1])
        else:
            node = _DEVICE_NODE.match(device[0])
            minor = int(node.group(1)) if node else None
    meta = holder.statement("meta-disk") if holder else None
    disk = holder.statement("disk") if holder else None
    remote = section.block("_remote_host")
    protocol = section.statement("protocol")
    net = section.block("net")
    disk_section = (volume.block("disk") if volume else None) or section.block("disk")
    vol_number = volume.words[1] if volume is not None and len(volume.words) > 1 else None
    return ShowDevice(
        resource=name,
        minor=minor,
        volume=int(vol_number) if vol_number is not None and vol_number.isdigit() else None,
        protocol=protocol[0] if protocol else (net.options().get("protocol") if net else None),
        disk=disk[0] if disk else None,
        meta_disk=meta[0] if meta else None,
        local_address=_address(this_host),
        peer_address=_address(remote),
        net=net.options() if net else {},
        disk_options=disk_section.options() if disk_section else {},
    )


def _address(block: Optional[ConfigBlock]) -> Optional[str]:
    value = block.statement("address") if block else None
    return value[-1] if value else None
