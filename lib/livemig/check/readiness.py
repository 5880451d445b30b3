"""Gather the inputs of ``livemig check`` and run every layer's checks.

Inputs, each replaceable for tests and for checking saved files:

1. the CIB: ``cibadmin --query`` (or a file through ``CIB_file``);
2. the VM's primitive, by resource id or by the domain name in its ``config`` file;
3. the domain XML: the primitive's ``config`` file (or given text);
4. the DRBD configuration: ``drbdadm -v dump-xml all`` (or given text);
5. DRBD runtime state, through the migration guard (skippable);
6. the peer's libvirtd, one bounded connection (skippable).

Something that cannot be read becomes an ``unknown`` row; nothing raises.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from lxml import etree

from livemig.check.domain import StatFunction, check_domain, check_guard_resources
from livemig.check.drbd_config import check_drbd_config, parse_views
from livemig.check.hook import check_hook
from livemig.check.host import HostPaths, check_host
from livemig.check.libvirt import Connector, LocalUri, TargetUri, check_libvirt, target_uri
from livemig.check.model import (
    LAYER_DOMAIN,
    LAYER_DRBD_CONFIG,
    LAYER_DRBD_RUNTIME,
    LAYER_PACEMAKER,
    CheckReport,
    CheckResult,
    Fix,
    fail,
    unknown,
    warn,
)
from livemig.check.pacemaker import check_pacemaker
from livemig.check.runtime import check_runtime
from livemig.check.window import (
    check_window_config,
    check_window_runtime,
    diskless_hosts,
    pacemaker_node,
    window_mode,
)
from livemig.domain_xml import domain_name
from livemig.drbd.guard import MODE_AUTO_PROMOTE, MODE_DUAL_PRIMARY
from livemig.drbd.state import DrbdStateError
from livemig.drbd.tools import DrbdReader
from livemig.files import FileNotText, FileUnreadable, read_text_file
from livemig.ocf.deadline import Deadline
from livemig.pacemaker.cib import (
    CibError,
    drbd_clones,
    find_resource,
    instance_attributes,
    node_names,
    parse_cib,
    read_cib_xml,
    virtual_domain_primitives,
)
from livemig.run import CommandRunner

MAX_DOMAIN_XML_BYTES = 4 * 1024 * 1024
#: A config file whose file system does not answer a read within this long is unreadable.
CONFIG_READ_TIMEOUT = 10.0


@dataclass
class CheckOptions:
    """What to check and where the inputs come from (None: read them live)."""

    cib_file: Optional[str] = None
    drbd_xml: Optional[str] = None
    domain_xml: Optional[str] = None
    domain_xml_path: Optional[str] = None
    peer: Optional[str] = None
    local_node: Optional[str] = None
    peer_names: Mapping[str, str] = field(default_factory=dict)
    peer_uri: Optional[str] = None
    runtime: bool = True
    libvirt: bool = True
    #: this node's systemd units and libvirt-guests (check/host.py); None: not checked
    host: Optional[HostPaths] = None


def check_vm(vm: str, options: CheckOptions, *, runner: CommandRunner, deadline: Deadline,
             reader: Optional[DrbdReader] = None, stat: StatFunction = os.stat,
             connect: Optional[Connector] = None, local_uri: Optional[LocalUri] = None) -> CheckReport:
    """Every check for VM ``vm`` (a Pacemaker resource id or a domain name).

    ``connect`` opens the target's URI, ``local_uri`` reads the local
    libvirtd's (when the resource leaves ``hypervisor`` unset); both default
    to a bounded libvirt connection.
    """
    results: List[CheckResult] = []
    try:
        cib_xml = read_cib_xml(runner, deadline, cib_file=options.cib_file)
        cib = parse_cib(cib_xml)
    except CibError as exc:
        results.append(unknown(LAYER_PACEMAKER, "cib", f"could not read the CIB: {exc}",
                               Fix("run on a cluster node (cibadmin --query must work), or pass --cib FILE")))
        return CheckReport(vm=vm, results=results)
    primitive = _find_vm(cib, vm, options, deadline)
    vm_id = primitive.get("id") if primitive is not None else None
    params = instance_attributes(primitive) if primitive is not None else {}
    if primitive is None:
        results.append(fail(LAYER_PACEMAKER, "vm-resource",
                            f"no primitive has id {vm} or runs a domain named {vm}",
                            Fix("create it with the commands `livemig config` prints")))

    config_path = options.domain_xml_path or params.get("config")
    xml_text = options.domain_xml
    if xml_text is None:
        xml_text, problem = _read_domain_xml(params.get("config"), deadline)
        if problem:
            results.append(unknown(LAYER_DOMAIN, "domain-xml", problem,
                                   Fix("run where the config file exists, or pass --domain-xml FILE")))

    drbd_text: Optional[str] = options.drbd_xml
    reader = reader or DrbdReader(runner, deadline)
    if drbd_text is None:
        try:
            drbd_text = reader.run_tool(["drbdadm", "-v", "dump-xml", "all"])
        except DrbdStateError as exc:
            results.append(unknown(LAYER_DRBD_CONFIG, "drbd-config", f"could not read the DRBD configuration: "
                                   f"{exc}", Fix("run on a DRBD node, or pass --drbd-xml FILE")))
    minor_names = _minor_names(drbd_text)

    resources: List[str] = []
    name: Optional[str] = None
    if xml_text is not None:
        findings = check_domain(xml_text, minor_names, stat=stat)
        results += findings.results
        resources = findings.drbd_resources
        name = findings.name
    if not resources and params.get("drbd_resources"):
        resources = [w for w in params["drbd_resources"].replace(",", " ").split() if w]
    if vm_id is not None:
        results += check_guard_resources(vm_id, params.get("drbd_resources"), resources)
    window = window_mode(params)
    if drbd_text is not None and resources:
        results += check_drbd_config(drbd_text, resources, check_window_config if window else None)
    if vm_id is not None:
        results += check_pacemaker(cib, vm_id, resources, window=window,
                                   diskless=_diskless_nodes(drbd_text, resources, options.peer_names))

    peer, why = _peer(cib, options)
    clones: Dict[str, str] = {}
    for res in resources:
        found = [c.clone_id for c in drbd_clones(cib, res) if c.clone_id]
        if found:
            clones[res] = found[0] or ""
    if not options.runtime:
        results.append(warn(LAYER_DRBD_RUNTIME, "drbd-state", "not checked (--skip-runtime)",
                            Fix("livemig guard --peer NODE --domain-xml FILE")))
    elif peer is None:
        results.append(unknown(LAYER_DRBD_RUNTIME, "drbd-state", why, Fix("name the target with --peer NODE")))
    elif resources and window:
        results += _window_runtime(resources, peer, runner=runner, deadline=deadline, cib_xml=cib_xml,
                                   options=options, reader=reader)
    elif resources:
        mode = MODE_AUTO_PROMOTE if params.get("drbd_guard") == MODE_AUTO_PROMOTE else MODE_DUAL_PRIMARY
        results += check_runtime(resources, peer, runner=runner, deadline=deadline, cib_xml=cib_xml,
                                 clones=clones, mode=mode, peer_names=options.peer_names, reader=reader)
    virtual_domain = primitive is not None and primitive.get("type") == "VirtualDomain"
    target = target_uri(peer, params, deadline=deadline, template=options.peer_uri, local_uri=local_uri,
                        skip_connect=not options.libvirt, virtual_domain=virtual_domain) \
        if peer is not None else TargetUri(None)
    results += check_libvirt(peer, target.uri, config_path, deadline=deadline, connect=connect,
                             skip_connect=not options.libvirt, target=target)
    if options.host is not None:
        results += check_host(options.host)
        if window:
            results += check_hook(options.host)
    return CheckReport(vm=vm_id or vm, results=results, domain=name, drbd_resources=resources, peer=peer)


def _diskless_nodes(drbd_text: Optional[str], resources: List[str], peer_names: Mapping[str, str]) -> List[str]:
    """The Pacemaker names of the nodes the DRBD configuration makes diskless for any of ``resources``."""
    if drbd_text is None:
        return []
    try:
        views = parse_views(drbd_text)
    except DrbdStateError:
        return []
    hosts = [host for res in resources if res in views for host in diskless_hosts(views[res])]
    return list(dict.fromkeys(pacemaker_node(host, peer_names) for host in hosts))


def _window_runtime(resources: List[str], peer: str, *, runner: CommandRunner, deadline: Deadline, cib_xml: str,
                    options: CheckOptions, reader: DrbdReader) -> List[CheckResult]:
    """drbd_two_primaries=migration: DRBD 9 loaded, no window left open, and the guard of the mode, if known."""
    from livemig.drbd import modes

    results = check_window_runtime(resources, reader)
    mode = getattr(modes, "MODE_WINDOW", None)  # the guard's mode for this one (drbd/modes.py), once it has it
    if mode is None:
        results.append(warn(LAYER_DRBD_RUNTIME, "drbd-state",
                            "the migration guard of drbd_two_primaries=migration is not in this livemig: the "
                            "target's role, disks and quorum are not checked here",
                            Fix(f"livemig guard --peer {peer} --domain-xml FILE, once it has the mode")))
        return results
    return results + check_runtime(resources, peer, runner=runner, deadline=deadline, cib_xml=cib_xml,
                                   clones={}, mode=str(mode), peer_names=options.peer_names, reader=reader)


def _find_vm(cib: etree._Element, vm: str, options: CheckOptions, deadline: Deadline) -> Optional[etree._Element]:
    element = find_resource(cib, vm)
    if element is not None and element.tag == "primitive":
        return element
    candidates = virtual_domain_primitives(cib)
    for primitive in candidates:
        text, _problem = _read_domain_xml(instance_attributes(primitive).get("config"), deadline)
        if text is not None and domain_name(text) == vm:
            return primitive
    if options.domain_xml is not None and domain_name(options.domain_xml) == vm and len(candidates) == 1:
        return candidates[0]
    return None


def _read_domain_xml(path: Optional[str], deadline: Deadline) -> Tuple[Optional[str], Optional[str]]:
    """The config file's text (a regular file, bounded in size and time), or why not."""
    if not path:
        return None, "the VM resource has no config parameter"
    try:
        return read_text_file(path, MAX_DOMAIN_XML_BYTES, deadline.bound(CONFIG_READ_TIMEOUT)), None
    except FileNotText:
        return None, f"{path} is not UTF-8 text"
    except FileUnreadable as exc:
        return None, f"cannot read the config file: {exc}"


def _minor_names(drbd_text: Optional[str]) -> Dict[int, str]:
    if drbd_text is None:
        return {}
    try:
        views = parse_views(drbd_text)
    except DrbdStateError:
        return {}
    return {minor: view.name for view in views.values() for minor in view.config.minors()}


def _short(name: str) -> str:
    return name.split(".", 1)[0]


def _peer(cib: etree._Element, options: CheckOptions) -> Tuple[Optional[str], str]:
    """The migration target: --peer, or the one CIB node that is not this one."""
    if options.peer:
        return options.peer, ""
    local = options.local_node or socket.gethostname()
    nodes = node_names(cib)
    others = [n for n in nodes if _short(n) != _short(local)]
    if len(others) == 1 and len(nodes) == 2:
        return others[0], ""
    return None, (f"cannot tell the target node: this node is {local}, the CIB lists "
                  f"{', '.join(nodes) or 'no nodes'}")
