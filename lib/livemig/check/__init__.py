"""``livemig check``: can this VM be live-migrated safely, and what fixes it if not (rows only).

Five layers must agree: the domain XML (disks on DRBD), the DRBD configuration,
the DRBD runtime state, the Pacemaker configuration and libvirt on both nodes.
Each module here checks one layer and returns :class:`~livemig.check.model.CheckResult`
rows; :mod:`livemig.check.readiness` gathers the inputs and runs them all;
:mod:`livemig.check.report` prints them. Nothing here prints.
"""
