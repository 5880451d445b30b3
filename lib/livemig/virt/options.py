"""Agent parameters that translate into libvirt terms: URIs and shutdown modes."""

from __future__ import annotations

from typing import Optional

from livemig.virt.errors import InvalidSetting

# libvirt's virDomainShutdownFlagValues, by virsh's --mode names.
SHUTDOWN_FLAGS = {"acpi": 1, "agent": 2, "initctl": 4, "signal": 8, "paravirt": 16}


def shutdown_flags(mode: str) -> int:
    """Flags for virDomainShutdownFlags from a comma-separated list of mode names."""
    flags = 0
    for word in (w.strip() for w in mode.split(",")):
        if not word:
            continue
        if word not in SHUTDOWN_FLAGS:
            raise InvalidSetting(
                f"shutdown_mode {word!r} is not one of {', '.join(SHUTDOWN_FLAGS)}")
        flags |= SHUTDOWN_FLAGS[word]
    return flags


def check_uri(uri: Optional[str]) -> None:
    """InvalidSetting unless ``uri`` looks like a libvirt URI (None: libvirt's default)."""
    if uri is None:
        return
    if not uri or len(uri) > 1024 or not uri.isascii() or any(c.isspace() or ord(c) < 32 for c in uri) \
            or ":" not in uri:
        raise InvalidSetting(f"hypervisor={uri!r} is not a libvirt URI (e.g. qemu:///system)")


def is_local_qemu(uri: Optional[str]) -> bool:
    """Whether the domain's QEMU process would run on this very host.

    Only then may /proc stand in for libvirtd. ``None`` (libvirt's default
    URI) counts as local QEMU: the agent runs on the VM host.
    """
    if uri is None:
        return True
    scheme, _, rest = uri.partition(":")
    return scheme in ("qemu", "qemu+unix") and rest.startswith("///")
