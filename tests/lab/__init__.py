"""The livemig two-node lab (docs/lab.md), a package: ``from tests.lab import cluster, nodes``.

Modules by job: ``core`` (names, paths, bounded commands, waiting), ``state`` (what ``up`` built,
in state.json), ``lock`` (one lab per machine), ``network`` (namespaces, bridge, veths),
``nodes`` (each node's files, PID 1, daemons, running commands in it), ``storage`` (the shared
disk, the DRBD simulator's store, the VM definition), ``cluster`` (corosync.conf, the crm
configuration, crm_mon queries), ``queries`` (logs, processes, host snapshots),
``lifecycle`` (``up``, ``down``) and ``labctl`` (the ``tests/lab/lab`` command line).

Scripts that run inside the nodes (``nodeinit.py``, ``drbdsim.py``, ``fence_livemiglab``,
``ocf/drbd``) use the standard library only and are run by path, never imported from here.
"""
