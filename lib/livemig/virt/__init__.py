"""libvirt: bounded connection, domain XML, lifecycle and state mapping.

Modules here import ``libvirt`` lazily so that meta-data and validate-all
never need it.
"""
