"""Nodes sharing one DRBD simulator store (tests/lab/drbdsim.py), in-process, without a lab.

Each :class:`SimNode` is a :class:`~livemig.run.CommandRunner` that runs ``drbdsetup`` and
``drbdadm`` as the simulator does on that node (its ``main``, with the node's environment), so
the code under test talks to DRBD's formats, rules and exit codes exactly as in the lab.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from livemig.ocf.deadline import Deadline
from livemig.run import CommandResult, CommandRunner
from tests.lab import drbdsim

RESOURCE = "r0"
#: a domain whose one disk is the resource's volume 0 (the hook and the guard trace it by name)
DOMAIN_XML = f"""<domain type='qemu'><name>vm1</name><devices>
<disk type='block' device='disk'><source dev='/dev/drbd/by-res/{RESOURCE}/0'/><target dev='vda'/></disk>
</devices></domain>"""


class DrbdWorld:
    def __init__(self, root: Path, nodes: Sequence[str], two_primaries_in_config: bool = False) -> None:
        self.root = root
        self.names = list(nodes)
        self.store = str(root / "state.json")
        self.procs = {n: str(root / f"proc-drbd-{n}") for n in nodes}
        drbdsim.init_store(self.store, RESOURCE, 0, "", [(n, f"10.0.0.{i + 1}") for i, n in enumerate(nodes)],
                           proc_paths=self.procs, devices=False, mode="9")
        self.nodes = {n: SimNode(self, n) for n in nodes}
        flag = "yes" if two_primaries_in_config else "no"
        self.sim(["config", RESOURCE, f"--allow-two-primaries={flag}"])
        for n in nodes:
            assert self.nodes[n].tool(["drbdadm", "up", RESOURCE]).ok

    @contextlib.contextmanager
    def as_node(self, name: str) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in ("LIVEMIG_LAB_NODE", "LIVEMIG_DRBDSIM_STORE", "LIVEMIG_PROC_DRBD")}
        os.environ.update(LIVEMIG_LAB_NODE=name, LIVEMIG_DRBDSIM_STORE=self.store,
                          LIVEMIG_PROC_DRBD=self.procs[name])
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def sim(self, args: List[str], node: Optional[str] = None) -> CommandResult:
        return self.nodes[node or self.names[0]].tool(["drbdsim", *args])

    def dump(self) -> Dict[str, Any]:
        with open(self.store, encoding="utf-8") as fh:
            return json.load(fh)

    def deadline(self, seconds: float = 20.0) -> Deadline:
        return Deadline(seconds)


class SimNode(CommandRunner):
    """One node's DRBD tools, as the simulator answers them there."""

    def __init__(self, world: DrbdWorld, name: str) -> None:
        super().__init__()
        self.world = world
        self.name = name
        self.calls: List[List[str]] = []

    def tool(self, argv: Sequence[str]) -> CommandResult:
        out, err = io.StringIO(), io.StringIO()
        with self.world.as_node(self.name), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = drbdsim.main(["drbdsim.py", os.path.basename(argv[0]), *argv[1:]])
        return CommandResult(list(argv), code, out.getvalue(), err.getvalue())

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert timeout > 0
        self.calls.append(list(argv))
        if os.path.basename(argv[0]) not in ("drbdsetup", "drbdadm"):
            return CommandResult(list(argv), 127, "", f"{argv[0]}: not found")
        return self.tool(argv)
