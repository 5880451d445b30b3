"""Where a migration goes: the peer's libvirt URI and the migration stream's URI.

Same meaning as ocf:heartbeat:VirtualDomain's parameters:

- ``remoteuri`` wins, with ``%n`` replaced by the target node name;
- otherwise the local ``hypervisor`` URI with its host replaced by the target
  node (``migration_network_suffix`` inserted after the first label of the
  name, ``migration_user@`` in front), and ``+migration_transport`` added to
  the scheme: ``qemu:///system`` -> ``qemu+tcp://node2/system``;
- the migration stream: ``migrateuri`` (``%n`` replaced), else
  ``--migrateuri`` from migrate_options, else ``tcp://<node+suffix>[:port]``
  when migration_network_suffix or migrateport is set, else libvirt's default
  (the target's host name).

``%n`` is always the plain Pacemaker node name (heartbeat substitutes its
already-suffixed, user-prefixed name in some paths; that is a bug, not a
feature to copy).
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import parse_qsl, urlencode

from livemig.virt.errors import InvalidSetting

_NODE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_TRANSPORT = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9]*)(?:\+(?P<transport>[a-z0-9]+))?://(?P<authority>[^/?#]*)"
                  r"(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?$")
#: a URI after %n substitution: a scheme, then only RFC 3986 characters (ASCII, no white space)
_URI_TEXT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
#: query parameters that only make sense for a local socket
_LOCAL_ONLY_QUERY = {"socket", "mode"}


def check_node_name(node: str) -> str:
    if not _NODE.match(node):
        raise InvalidSetting(f"migration target {node!r} is not a valid host name")
    return node


def network_name(node: str, suffix: str) -> str:
    """``node`` with ``suffix`` after its first label: node1.example.com + -mig -> node1-mig.example.com."""
    if not suffix:
        return node
    if not re.match(r"^[A-Za-z0-9._-]{1,63}$", suffix):
        raise InvalidSetting(f"migration_network_suffix={suffix!r} is not a host name suffix")
    head, dot, tail = node.partition(".")
    return f"{head}{suffix}{dot}{tail}"


def substitute_node(template: str, node: str, what: str) -> str:
    value = template.replace("%n", node)
    if "%" in value.replace("%25", ""):
        raise InvalidSetting(f"{what}={template!r}: only %n may be substituted")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidSetting(f"{what}={template!r} contains white space or control characters")
    if not _URI_TEXT.match(value) or len(value) > 1024:
        raise InvalidSetting(f"{what}={template!r} is not a URI (scheme:..., ASCII only)")
    if ".." in value.split("?", 1)[0].split("/"):
        raise InvalidSetting(f"{what}={template!r}: '..' path segments are not allowed")
    return value


def remote_uri(local_uri: str, target: str, *, remoteuri: str = "", transport: str = "", user: str = "",
               suffix: str = "") -> str:
    """The URI of the target's libvirtd, as seen from this node."""
    check_node_name(target)
    if remoteuri:
        return substitute_node(remoteuri, target, "remoteuri")
    match = _URI.match(local_uri)
    if not match:
        raise InvalidSetting(f"cannot derive the target's URI from hypervisor={local_uri!r}; set remoteuri")
    if transport and not _TRANSPORT.match(transport):
        raise InvalidSetting(f"migration_transport={transport!r} is not a libvirt transport (tcp, ssh, tls...)")
    if user and not _USER.match(user):
        raise InvalidSetting(f"migration_user={user!r} is not a user name")
    scheme = match.group("scheme")
    transport = transport or (match.group("transport") or "")
    if transport == "unix":
        raise InvalidSetting("migration_transport=unix cannot reach another node")
    authority = match.group("authority")
    port = ""
    host_port = authority.rsplit("@", 1)[-1]
    if re.match(r"^[^:\[\]]*:\d+$", host_port):
        port = ":" + host_port.rsplit(":", 1)[1]
    host = network_name(target, suffix)
    if user:
        host = f"{user}@{host}"
    query = [(k, v) for k, v in parse_qsl(match.group("query") or "", keep_blank_values=True)
             if k not in _LOCAL_ONLY_QUERY]
    uri = f"{scheme}{'+' + transport if transport else ''}://{host}{port}{match.group('path') or '/'}"
    return uri + (f"?{urlencode(query)}" if query else "")


def migration_stream_uri(target: str, *, migrateuri: str = "", option_uri: str = "", suffix: str = "",
                         port: Optional[int] = None) -> Optional[str]:
    """The URI the migration data goes to, or None for libvirt's default."""
    check_node_name(target)
    if migrateuri:
        return substitute_node(migrateuri, target, "migrateuri")
    if option_uri:
        return substitute_node(option_uri, target, "migrate_options --migrateuri")
    if suffix or port:
        host = network_name(target, suffix)
        return f"tcp://{host}" + (f":{port}" if port else "")
    return None
