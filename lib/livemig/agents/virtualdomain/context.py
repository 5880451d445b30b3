"""What the action modules of ocf:livemig:VirtualDomain use of the agent (the running action)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Protocol

if TYPE_CHECKING:
    import logging

    from livemig.agents.virtualdomain.drbd import DrbdPolicy
    from livemig.ocf.deadline import Deadline
    from livemig.ocf.environment import OCFEnvironment
    from livemig.ocf.metadata import AgentMetadata
    from livemig.ocf.statefile import StateFile
    from livemig.run import CommandRunner

#: bound for one file-system call (stat, unlink, write) that a hung mount could block
FS_BOUND = 5.0


class AgentContext(Protocol):
    """The agent as the action modules see it (:class:`.agent.VirtualDomain` is the one there is)."""

    metadata: AgentMetadata
    env: OCFEnvironment
    log: logging.Logger
    deadline: Deadline
    state: StateFile
    runner: CommandRunner
    notice: Optional[str]
    #: the resource a domain's identity tag names (None: not called for a resource)
    owner: Optional[str]

    def params(self, lenient: bool = False) -> Dict[str, Any]: ...

    def fs_bound(self) -> float: ...

    def drbd_policy(self, xml_text: Optional[str]) -> DrbdPolicy: ...
