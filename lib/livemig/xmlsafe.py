"""The one XML parser configuration livemig uses for input it did not write.

Domain XML, ``drbdadm dump-xml`` output and the CIB are parsed with entities
left unresolved, no DTD loaded, no network access and huge trees refused:
XXE and billion-laughs documents cannot make livemig read files or memory.
"""

from __future__ import annotations

from lxml import etree


def safe_xml_parser() -> etree.XMLParser:
    """A fresh hardened parser (lxml parsers are not thread-safe to share)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)
