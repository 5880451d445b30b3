"""libvirt: bounded connection, lifecycle and state mapping (the domain XML: livemig.domain_xml).

Modules here import ``libvirt`` lazily so that meta-data and validate-all
never need it.
"""
