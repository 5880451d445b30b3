"""The identity tag's own pieces: reading the QEMU driver's status files, bounded and strict."""

from __future__ import annotations

from pathlib import Path

from livemig.virt.identity import NAMESPACE, running_names_from_status, tag_domain_xml

GUEST = "<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory></domain>"


def test_status_files_name_only_the_owners_running_domains(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(f"<domstatus state='running'>{tag_domain_xml(GUEST.format(name='a'), 'vm1')}"
                                    "</domstatus>")
    (tmp_path / "b.xml").write_text(f"<domstatus>{tag_domain_xml(GUEST.format(name='b'), 'vm2')}</domstatus>")
    (tmp_path / "c.xml").write_text(f"<domstatus>{GUEST.format(name='c')}</domstatus>")  # untagged
    (tmp_path / "d.xml").write_text(f"<domstatus><domain><name>d</name><metadata>{NAMESPACE}</metadata>")  # broken
    (tmp_path / "e.xml").mkdir()  # not a regular file
    (tmp_path / "a.log").write_text(tag_domain_xml(GUEST.format(name="x"), "vm1"))  # not a status file
    assert running_names_from_status("vm1", str(tmp_path)) == ["a"]
    assert running_names_from_status("vm2", str(tmp_path)) == ["b"]
    assert running_names_from_status("vm3", str(tmp_path)) == []
    assert running_names_from_status("vm1", str(tmp_path / "missing")) == []


def test_a_tag_id_is_an_attribute_whatever_its_characters() -> None:
    hostile = 'vm"1<&>'
    tagged = tag_domain_xml(GUEST.format(name="a"), hostile)
    from lxml import etree

    root = etree.fromstring(tagged.encode())
    assert [el.get("id") for el in root.iter(f"{{{NAMESPACE}}}resource")] == [hostile]
