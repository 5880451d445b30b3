"""livemig: Pacemaker OCF resource agents for live-migrating VMs on DRBD.

Importing this package has no side effects. The version below is the one
place the project's version is defined (setup.cfg and the packaging read it).
"""

__version__ = "0.1.0"
