"""DRBD: state readers (8.x ``/proc/drbd``, 9 JSON), configuration, disk mapping, the guard.

Importing this package has no side effects and imports none of its modules;
callers import what they use (a level-0 monitor needs none of it).

- :mod:`livemig.drbd.state`   typed state (``None`` everywhere means "not known")
- :mod:`livemig.drbd.proc`    DRBD 8.x ``/proc/drbd``
- :mod:`livemig.drbd.status9` DRBD 9 ``drbdsetup status --json`` / ``show --json``
- :mod:`livemig.drbd.config`  ``drbdadm -v dump-xml``
- :mod:`livemig.drbd.mapping` libvirt disk source -> DRBD resource and volume
- :mod:`livemig.drbd.byres`   udev's ``/dev/drbd/by-res`` links
- :mod:`livemig.drbd.tools`   the reader that calls drbdsetup/drbdadm through a runner
- :mod:`livemig.drbd.guard`   the migration guard's verdict
"""
