"""ocf:livemig:VirtualDomain: every OCF decision of the agent lives in this package (see :mod:`.agent`)."""

from livemig.agents.virtualdomain.agent import VirtualDomain, main

__all__ = ["VirtualDomain", "main"]
