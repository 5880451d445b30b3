"""Mutation fuzz of the migration guard against an independent oracle.

The property: whenever :func:`livemig.drbd.guard.evaluate_guard` says
"allowed", the oracle (``guard_oracle``, which reads the same inputs with its
own strict parser and no livemig code) says "provably safe". No mutation of
what the guard reads may turn a refusal into "allowed".

- :func:`test_no_mutation_turns_a_refusal_into_allowed`: healthy worlds (the
  real fixtures of 8.0, 8.3, 8.4 and 9 made dual-primary, and generated ones),
  then one to three mutations of any input at the text or JSON/XML level:
  lines and tokens deleted, duplicated, swapped, retyped, renamed, truncated,
  NUL bytes and blank lines, minors dropped or duplicated, by-res links moved,
  a tool failing, hanging or printing garbage, the CIB changed.
- :func:`test_well_formed_states_agree_with_the_oracle`: random but
  well-formed DRBD states rendered in the real formats; the guard allows
  exactly what the oracle proves safe (in both directions).
- :func:`test_healthy_worlds_are_allowed` and the baseline tests: provably
  safe states are allowed, so the fuzz is not vacuous.

Budget: a fixed, derandomized number of examples under ``make test``;
``LIVEMIG_FUZZ_EXAMPLES=20000`` runs that many per property, with fresh
random examples on every run (a failure prints its ``@reproduce_failure``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import replace
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import CommandNotFound, CommandResult, CommandRunner, CommandTimeout
from tests.unit.drbd import guard_world as gw
from tests.unit.drbd.guard_oracle import Verdict, judge
from tests.unit.drbd.guard_world import Answer, ByRes, World

# -- budget ---------------------------------------------------------------------------------------

_ON_DEMAND = os.environ.get("LIVEMIG_FUZZ_EXAMPLES", "").strip()
_EXAMPLES = int(_ON_DEMAND) if _ON_DEMAND.isdigit() and int(_ON_DEMAND) > 0 else 0


def budget(default: int) -> settings:
    """``default`` derandomized examples, or LIVEMIG_FUZZ_EXAMPLES fresh random ones."""
    return settings(max_examples=_EXAMPLES or default, deadline=None, derandomize=not _EXAMPLES,
                    database=None, print_blob=bool(_EXAMPLES),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- running the guard on a world -------------------------------------------------------------------


class WorldRunner(CommandRunner):
    """Answers each argv from the world; anything not in it fails with exit 20, like tests/fakes/drbd."""

    def __init__(self, answers: Mapping[Tuple[str, ...], Answer]) -> None:
        super().__init__()
        self.answers = answers
        self.calls: List[Tuple[str, ...]] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert 0 < timeout <= 30, timeout
        key = tuple(argv)
        self.calls.append(key)
        answer = self.answers.get(key)
        if answer is None:
            return CommandResult(list(argv), 20, "", f"{argv[0]}: no output configured for: {' '.join(argv)}")
        if answer.timeout:
            raise CommandTimeout(list(argv), f"{argv[0]} did not finish within {timeout:.1f}s and was killed")
        if answer.missing:
            raise CommandNotFound(list(argv), f"{argv[0]}: command not found")
        return CommandResult(list(argv), answer.code, answer.stdout, answer.stderr)


def run_guard(world: World) -> GuardVerdict:
    with tempfile.TemporaryDirectory(prefix="livemig-fuzz-") as tmp:
        proc_path = os.path.join(tmp, "proc-drbd")
        if world.proc is not None:
            with open(proc_path, "wb") as handle:
                handle.write(world.proc.encode("utf-8"))
        by_res_dir = os.path.join(tmp, "by-res")
        if world.by_res is not None:
            os.mkdir(by_res_dir)
            for entry in world.by_res:
                path = os.path.join(by_res_dir, *entry.path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if entry.kind == "link":
                    os.symlink(entry.target, path)
                else:
                    with open(path, "w", encoding="ascii"):
                        pass
        runner = WorldRunner(world.answers)
        deadline = Deadline(30)
        reader = DrbdReader(runner, deadline, proc_path=proc_path, by_res_dir=by_res_dir)
        return evaluate_guard(list(world.resources), world.target, world.mode, runner=runner, deadline=deadline,
                              peer_names=dict(world.peer_names) or None, reader=reader)


def explain(world: World, verdict: GuardVerdict, oracle: Verdict) -> str:
    checks = "\n".join(f"  {c.resource} {c.check} ok={c.ok}: {c.detail}" for c in verdict.checks)
    return (f"guard allowed={verdict.allowed} decided={verdict.decided}, oracle safe={oracle.safe}: {oracle.why}\n"
            f"guard checks:\n{checks}\n{world.describe()}")


def assert_allowed_implies_safe(world: World) -> None:
    verdict = run_guard(world)
    oracle = judge(world)
    assert not verdict.allowed or oracle.safe, explain(world, verdict, oracle)


# -- DRBD's vocabulary ------------------------------------------------------------------------------

ROLES = ["Primary", "Secondary", "Unknown"]
DISK_STATES = ["Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent", "Outdated",
               "DUnknown", "Consistent", "UpToDate"]
CSTATES8 = ["StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe", "NetworkFailure",
            "ProtocolError", "TearDown", "WFConnection", "WFReportParams", "Connected", "StartingSyncS",
            "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID", "SyncSource", "SyncTarget", "VerifyS",
            "VerifyT", "PausedSyncS", "PausedSyncT", "Ahead", "Behind", "Unconfigured"]
CSTATES9 = ["StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe", "NetworkFailure",
            "ProtocolError", "Connecting", "TearDown", "Connected"]
REPLICATION9 = ["Off", "Established", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID",
                "SyncSource", "SyncTarget", "VerifyS", "VerifyT", "PausedSyncS", "PausedSyncT", "Ahead", "Behind"]
STATE_NAMES = sorted(set(ROLES + DISK_STATES + CSTATES8 + CSTATES9 + REPLICATION9))
ODD_WORDS = ["", "?", "null", "true", "false", "yes", "no", "0", "1", "-1", "00", "4096", "uptodate", "PRIMARY",
             "UpToDate ", "Primary\0", "Up\u00adToDate", "r-----", "s-----", "r---n-", "oos:0", "oos:", "oos:x",
             "cs:Connected", "ro:Primary/Primary", "st:Primary/Primary", "ds:UpToDate/UpToDate", "C", "A", "D",
             "Primary/Primary", "UpToDate/UpToDate", "version: 8.4.11-1 (api:1/proto:86-101)",
             "version: 9.2.5 (api:2/proto:86-122)", " 0: cs:Connected", "    ns:0 oos:0", "\t", "\r", "\u2028"]
OTHER_NODES = ["gamma", "beta", "salt-node1", "pcmk-1", "drbd-b", "node-b", "", gw.LOCAL_NODE]
_GARBAGE_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"], max_codepoint=0x2FF), max_size=12)
WORDS = st.one_of(st.sampled_from(STATE_NAMES), st.sampled_from(ODD_WORDS), st.sampled_from(OTHER_NODES),
                  _GARBAGE_TEXT)

Draw = Callable[..., Any]


# -- text-level mutations ------------------------------------------------------------------------------


def _describe(text: str) -> str:
    return repr(text if len(text) < 60 else text[:57] + "...")


def _line_index(draw: Draw, lines: List[str]) -> int:
    return int(draw(st.integers(0, len(lines) - 1)))


def mutate_text(draw: Draw, text: str) -> Tuple[str, str]:
    """One text-level change of ``text`` and what it was."""
    lines = text.split("\n")
    op = draw(st.sampled_from(["token", "token", "token", "delete-line", "duplicate-line", "swap-lines",
                               "blank-line", "nul", "truncate", "garbage-line", "replace-line", "char"]))
    if op == "token":
        i = _line_index(draw, lines)
        new, what = mutate_tokens(draw, lines[i])
        lines[i] = new
        return "\n".join(lines), f"line {i}: {what}"
    if op == "delete-line":
        i = _line_index(draw, lines)
        gone = lines.pop(i)
        return "\n".join(lines), f"delete line {i} {_describe(gone)}"
    if op == "duplicate-line":
        i = _line_index(draw, lines)
        j = int(draw(st.integers(0, len(lines))))
        lines.insert(j, lines[i])
        return "\n".join(lines), f"copy line {i} {_describe(lines[j])} to {j}"
    if op == "swap-lines":
        i, j = _line_index(draw, lines), _line_index(draw, lines)
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), f"swap lines {i} and {j}"
    if op == "blank-line":
        j = int(draw(st.integers(0, len(lines))))
        blank = draw(st.sampled_from(["", " ", "\t", "    "]))
        lines.insert(j, blank)
        return "\n".join(lines), f"blank line {blank!r} at {j}"
    if op == "nul":
        pos = int(draw(st.integers(0, len(text))))
        return text[:pos] + "\0" + text[pos:], f"NUL at {pos}"
    if op == "truncate":
        pos = int(draw(st.integers(0, max(0, len(text) - 1))))
        return text[:pos], f"truncate at {pos}"
    if op == "garbage-line":
        j = int(draw(st.integers(0, len(lines))))
        junk = draw(WORDS)
        lines.insert(j, junk)
        return "\n".join(lines), f"insert line {junk!r} at {j}"
    if op == "replace-line":
        i = _line_index(draw, lines)
        junk = draw(WORDS)
        old = lines[i]
        lines[i] = junk
        return "\n".join(lines), f"line {i} {_describe(old)} -> {junk!r}"
    pos = int(draw(st.integers(0, max(0, len(text) - 1))))
    char = draw(st.sampled_from(list("0123456789 \t\n:/-_.,\"'{}[]<>=aAzZ\0\r")))
    return text[:pos] + char + text[pos + 1:], f"char {pos} -> {char!r}"


def mutate_tokens(draw: Draw, line: str) -> Tuple[str, str]:
    """Delete, duplicate, swap or replace a whitespace-separated token (or a part of one)."""
    parts = re.split(r"(\s+)", line)
    tokens = [i for i in range(0, len(parts), 2) if parts[i]]
    if not tokens:
        return line + draw(WORDS), "append to an empty line"
    i = draw(st.sampled_from(tokens))
    old = parts[i]
    op = draw(st.sampled_from(["replace", "replace-part", "replace-part", "delete", "duplicate", "swap"]))
    if op == "delete":
        parts[i] = ""
        return "".join(parts), f"delete token {old!r}"
    if op == "duplicate":
        copy = old if draw(st.booleans()) else _replace_part(draw, old)
        parts[i] = f"{old} {copy}" if draw(st.booleans()) else f"{copy} {old}"
        return "".join(parts), f"token {old!r} -> {parts[i]!r}"
    if op == "swap":
        j = draw(st.sampled_from(tokens))
        parts[i], parts[j] = parts[j], parts[i]
        return "".join(parts), f"swap tokens {old!r} and {parts[i]!r}"
    parts[i] = draw(WORDS) if op == "replace" else _replace_part(draw, old)
    return "".join(parts), f"token {old!r} -> {parts[i]!r}"


def _replace_part(draw: Draw, token: str) -> str:
    """A token's value changed: ``key:VALUE``, one side of ``A/B``, or a quoted JSON/XML value."""
    found = re.match(r'^(.*?")([^"]*)(".*)$', token)
    if found:
        return found.group(1) + str(draw(WORDS)).replace('"', "") + found.group(3)
    key, sep, value = token.partition(":")
    if not sep:
        key, value = "", token
    left, slash, right = value.partition("/")
    new = draw(WORDS)
    if slash:
        value = f"{new}/{right}" if draw(st.booleans()) else f"{left}/{new}"
    else:
        value = new
    return f"{key}{sep}{value}"


# -- JSON-level mutations (objects keep duplicate keys and order) -----------------------------------------


class JObj:
    def __init__(self, pairs: List[Tuple[str, Any]]) -> None:
        self.pairs = list(pairs)

    def __repr__(self) -> str:
        text = " ".join(dump_tree(self).split())
        return text if len(text) < 60 else text[:57] + "..."


class RawNumber(str):
    """A JSON float kept as written (100.00)."""


def load_tree(text: str) -> Any:
    return json.loads(text, object_pairs_hook=JObj, parse_float=RawNumber)


def dump_tree(value: Any, indent: int = 0) -> str:
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, JObj):
        if not value.pairs:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dump_tree(v, indent + 2)}" for k, v in value.pairs]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + dump_tree(v, indent + 2) for v in value) + f"\n{pad}]"
    if isinstance(value, RawNumber):
        return str(value)
    return json.dumps(value)


def _containers(value: Any) -> List[Any]:
    found: List[Any] = []
    if isinstance(value, JObj):
        found.append(value)
        for _k, v in value.pairs:
            found += _containers(v)
    elif isinstance(value, list):
        found.append(value)
        for v in value:
            found += _containers(v)
    return found


JSON_KEYS = ["name", "role", "suspended", "suspended-user", "suspended-no-data", "suspended-fencing",
             "suspended-quorum", "suspended-foo", "devices", "volume", "minor", "disk-state", "quorum", "client",
             "connections", "peer-node-id", "connection-state", "peer-role", "peer_devices", "replication-state",
             "peer-disk-state", "out-of-sync", "resource", "options", "auto-promote", "net", "allow-two-primaries",
             "_peer_node_id", "_name", "Name", "role ", "extra"]
JSON_VALUES = st.one_of(WORDS, st.booleans(), st.none(), st.integers(-2, 4096), st.sampled_from([0.0, 1e3]),
                        st.just([]), st.just({}), st.sampled_from([[1], ["Primary"], {"x": 1}]))


def _json_value(draw: Draw) -> Any:
    value = draw(JSON_VALUES)
    if isinstance(value, dict):
        return JObj(list(value.items()))
    return value


def mutate_json(draw: Draw, text: str) -> Tuple[str, str]:
    try:
        tree = load_tree(text)
    except ValueError:
        return mutate_text(draw, text)
    nodes = _containers(tree)
    flags = [(n, i) for n in nodes if isinstance(n, JObj) for i, (_k, v) in enumerate(n.pairs) if isinstance(v, bool)]
    if flags and draw(st.integers(0, 4)) == 0:
        node, i = draw(st.sampled_from(flags))
        key, value = node.pairs[i]
        new = draw(st.sampled_from(["yes", "no", "true", "false", "True", "on", "off", 0, 1, None, not value]))
        node.pairs[i] = (key, new)
        return dump_tree(tree) + "\n", f"{key!r}: {value!r} -> {new!r}"
    node = draw(st.sampled_from(nodes))
    if isinstance(node, JObj):
        op = draw(st.sampled_from(["delete", "duplicate", "rename", "set", "set", "add"]))
        if not node.pairs:
            op = "add"
        if op == "add":
            key = draw(st.sampled_from(JSON_KEYS))
            node.pairs.insert(int(draw(st.integers(0, len(node.pairs)))), (key, _json_value(draw)))
            what = f"add key {key!r}"
        else:
            i = int(draw(st.integers(0, len(node.pairs) - 1)))
            key, value = node.pairs[i]
            if op == "delete":
                del node.pairs[i]
                what = f"delete key {key!r}"
            elif op == "duplicate":
                again = value if draw(st.booleans()) else _json_value(draw)
                node.pairs.insert(i + int(draw(st.integers(0, 1))), (key, again))
                what = f"duplicate key {key!r} ({again!r})"
            elif op == "rename":
                new = draw(st.one_of(st.sampled_from(JSON_KEYS), WORDS))
                node.pairs[i] = (new, value)
                what = f"rename key {key!r} -> {new!r}"
            else:
                new_value = _json_value(draw)
                node.pairs[i] = (key, new_value)
                what = f"{key!r}: {value!r} -> {new_value!r}"
    else:
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "non-object", "add"]))
        if not node:
            op = "add" if op != "non-object" else op
        if op == "add" or op == "non-object":
            item = draw(st.sampled_from([1, "x", None, True, []])) if op == "non-object" else JObj([])
            node.insert(int(draw(st.integers(0, len(node)))), item)
            what = f"insert array entry {item!r}"
        else:
            i = int(draw(st.integers(0, len(node) - 1)))
            if op == "delete":
                node.pop(i)
                what = f"delete array entry {i}"
            elif op == "duplicate":
                node.insert(i, load_tree(dump_tree(node[i])) if not isinstance(node[i], RawNumber) else node[i])
                what = f"duplicate array entry {i}"
            else:
                j = int(draw(st.integers(0, len(node) - 1)))
                node[i], node[j] = node[j], node[i]
                what = f"swap array entries {i} and {j}"
    return dump_tree(tree) + "\n", what


# -- XML-level mutations ----------------------------------------------------------------------------------

_HOST_BLOCK = re.compile(r'    <host name="[^"]*">.*?</host>\n', re.S)


def mutate_dump_xml(draw: Draw, world: World, text: str) -> Tuple[str, str]:
    op = draw(st.sampled_from(["rename-host", "rename-host", "drop-host", "add-host", "rename-resource", "text"]))
    hosts = _HOST_BLOCK.findall(text)
    if op == "rename-host" and hosts:
        names = re.findall(r'<host name="([^"]*)">', text)
        old = draw(st.sampled_from(names))
        new = draw(st.sampled_from(OTHER_NODES + [world.target, gw.short(world.target),
                                                  world.target + ".example.com"]))
        return text.replace(f'<host name="{old}">', f'<host name="{new}">', 1), f"host {old!r} -> {new!r}"
    if op == "drop-host" and hosts:
        block = draw(st.sampled_from(hosts))
        return text.replace(block, "", 1), "drop a host"
    if op == "add-host" and hosts:
        block = draw(st.sampled_from(hosts))
        new = draw(st.sampled_from(OTHER_NODES))
        extra = re.sub(r'<host name="[^"]*">', lambda m: f'<host name="{new}">', block, count=1)
        return text.replace(block, block + extra, 1), f"add host {new!r}"
    if op == "rename-resource":
        new = draw(st.sampled_from(["r0", "r1", "other", ""]))
        return (re.sub(r'<resource name="[^"]*"', lambda m: f'<resource name="{new}"', text, count=1),
                f"resource -> {new!r}")
    return mutate_text(draw, text)


def mutate_cib(draw: Draw, world: World, text: str) -> Tuple[str, str]:
    op = draw(st.sampled_from(["fence", "fence", "fence", "unconfigure", "rename-drbd-resource", "fixture",
                               "text", "text"]))
    if op == "fence":
        resources = list(world.resources) + ["r0", "r1", "wwwdata", "beijing"]
        resource = draw(st.sampled_from(resources))
        form = draw(st.sampled_from(["new", "old", "old-of-other", "prefix"]))
        if form == "old-of-other":
            block = gw.fence_constraint("zz" + resource, "old")
        elif form == "prefix":
            block = gw.fence_constraint(resource + "x", "new")
        else:
            block = gw.fence_constraint(resource, form)
        if "<constraints/>" in text:
            new = text.replace("<constraints/>", f"<constraints>\n{block}    </constraints>", 1)
        else:
            new = text.replace("</constraints>", block + "</constraints>", 1)
        return new, f"fence constraint {form} for {resource}"
    if op == "unconfigure":
        return text.replace("<configuration>", "<config>").replace("</configuration>", "</config>"), \
            "no <configuration>"
    if op == "rename-drbd-resource":
        new = draw(st.sampled_from(["other", "", "R0"]))
        return (re.sub(r'name="drbd_resource" value="[^"]*"', lambda m: f'name="drbd_resource" value="{new}"',
                       text, count=1), f"drbd_resource -> {new!r}")
    if op == "fixture":
        return gw.fixture("cib-synthetic-fence-beijing.xml"), "the CIB fencing beijing"
    return mutate_text(draw, text)


# -- world-level mutations ----------------------------------------------------------------------------------


def _retext(draw: Draw, world: World, argv: Tuple[str, ...]) -> World:
    answer = world.answer(argv)
    assert answer is not None
    name = " ".join(argv)
    if argv in (gw.STATUS9, gw.SHOW9) and draw(st.integers(0, 3)) > 0:
        text, what = mutate_json(draw, answer.stdout)
    elif argv[:3] == ("drbdadm", "-v", "dump-xml"):
        text, what = mutate_dump_xml(draw, world, answer.stdout)
    elif argv == gw.CIB_QUERY:
        text, what = mutate_cib(draw, world, answer.stdout)
    else:
        text, what = mutate_text(draw, answer.stdout)
    return world.with_answer(argv, replace(answer, stdout=text)).noted(f"{name}: {what}")


def _reanswer(draw: Draw, world: World, argv: Tuple[str, ...]) -> World:
    answer = world.answer(argv) or Answer()
    op = draw(st.sampled_from(["exit", "timeout", "missing", "absent", "empty", "garbage", "other-output"]))
    name = " ".join(argv)
    if op == "exit":
        code = draw(st.sampled_from([1, 2, 5, 10, 11, 17, 20, 127, 255]))
        keep = draw(st.booleans())
        new = Answer(code, answer.stdout if keep else "", "failed\n")
        what = f"exit {code}" + (" with its output" if keep else "")
    elif op == "timeout":
        new, what = Answer(timeout=True), "hangs"
    elif op == "missing":
        new, what = Answer(missing=True), "not installed"
    elif op == "absent":
        return world.with_answer(argv, None).noted(f"{name}: not answered")
    elif op == "empty":
        new, what = Answer(0, ""), "prints nothing"
    elif op == "garbage":
        junk = draw(st.one_of(WORDS, st.text(max_size=40)))
        new, what = Answer(0, junk), f"prints {junk!r}"
    else:
        donors = [a for k, a in world.answers.items() if k != argv and a.ok]
        donor = draw(st.sampled_from(donors)) if donors else Answer(0, "r0\n")
        new, what = Answer(0, donor.stdout), f"prints another command's output {_describe(donor.stdout)}"
    return world.with_answer(argv, new).noted(f"{name}: {what}")


def _minors_in(world: World) -> List[int]:
    found = {int(m) for m in re.findall(r"^\s*(\d+):", world.proc or "", re.M)}
    found |= {int(k[2][6:]) for k in world.answers if k[:2] == ("drbdadm", "sh-resource")}
    return sorted(found | {0, 1, 2, 99})


def _resource_names(world: World) -> List[str]:
    names = set(world.resources)
    names |= {k[2] for k in world.answers if k[:2] == ("drbdadm", "sh-minor")}
    return sorted(names | {"other"})


def mutate_by_res(draw: Draw, world: World) -> World:
    entries = list(world.by_res or ())
    op = draw(st.sampled_from(["delete", "retarget", "rename", "add", "to-file", "absent", "empty"]))
    if op in ("delete", "retarget", "rename", "to-file") and not entries:
        op = "add"
    if op == "absent":
        return replace(world, by_res=None).noted("by-res: no directory")
    if op == "empty":
        return replace(world, by_res=()).noted("by-res: empty directory")
    if op == "add":
        res = draw(st.sampled_from(_resource_names(world)))
        minor = draw(st.sampled_from(_minors_in(world)))
        path = (res,) if draw(st.booleans()) else (res, str(draw(st.integers(0, 2))))
        entries.append(ByRes(path, "link", f"/dev/drbd{minor}"))
        what = f"by-res: add {'/'.join(path)} -> drbd{minor}"
    else:
        i = int(draw(st.integers(0, len(entries) - 1)))
        old = entries[i]
        if op == "delete":
            entries.pop(i)
            what = f"by-res: delete {'/'.join(old.path)}"
        elif op == "retarget":
            target = draw(st.one_of(st.sampled_from([f"/dev/drbd{m}" for m in _minors_in(world)]),
                                    st.sampled_from(["/dev/sda", "/dev/drbd", "drbd1", "/dev/drbd1x"])))
            entries[i] = replace(old, target=target)
            what = f"by-res: {'/'.join(old.path)} -> {target}"
        elif op == "rename":
            res = draw(st.sampled_from(_resource_names(world)))
            entries[i] = replace(old, path=(res,) + old.path[1:])
            what = f"by-res: {'/'.join(old.path)} renamed to {res}"
        else:
            entries[i] = ByRes(old.path, "file")
            what = f"by-res: {'/'.join(old.path)} is a regular file"
    return replace(world, by_res=gw.normalized_by_res(entries)).noted(what)


def mutate_invocation(draw: Draw, world: World) -> World:
    op = draw(st.sampled_from(["target", "target", "mode", "resources", "peer-names"]))
    if op == "target":
        mapped = [v for _k, v in world.peer_names]
        new = draw(st.sampled_from(OTHER_NODES + mapped + [gw.short(world.target), world.target + ".example.com"]))
        return replace(world, target=new).noted(f"target -> {new!r}")
    if op == "mode":
        new = draw(st.sampled_from(["dual-primary", "auto-promote", "Dual-Primary", ""]))
        return replace(world, mode=new).noted(f"mode -> {new!r}")
    if op == "resources":
        names = list(world.resources)
        kind = draw(st.sampled_from(["add", "drop", "duplicate", "space"]))
        if kind == "add":
            names.append(draw(st.sampled_from(_resource_names(world) + ["nosuch", ""])))
        elif kind == "drop" and len(names) > 1:
            names.pop(int(draw(st.integers(0, len(names) - 1))))
        elif kind == "duplicate":
            names.append(names[0])
        else:
            names[0] = f" {names[0]} "
        return replace(world, resources=tuple(names)).noted(f"resources -> {names}")
    new_names: Tuple[Tuple[str, str], ...]
    if world.peer_names and draw(st.booleans()):
        new_names = ()
    else:
        new_names = ((world.target, draw(st.sampled_from(OTHER_NODES + ["salt-node3", "pcmk-2"]))),)
    return replace(world, peer_names=new_names).noted(f"peer_names -> {dict(new_names)}")


_MINOR_BLOCK = re.compile(r"^[ \t]*\d+:[ \t]+cs:.*\n(?:[ \t]+\S.*\n|\n)*", re.M)


def mutate_proc(draw: Draw, world: World) -> World:
    text = world.proc or ""
    blocks = _MINOR_BLOCK.findall(text)
    op = draw(st.sampled_from(["text", "text", "text", "state", "state", "drop-minor", "copy-minor",
                               "renumber"]))
    if op in ("state", "drop-minor", "copy-minor", "renumber") and not blocks:
        op = "text"
    if op == "text":
        new, what = mutate_text(draw, text)
    elif op == "state":
        block = draw(st.sampled_from(blocks))
        first, _, rest = block.partition("\n")
        field = draw(st.sampled_from(["cs", "ro", "ds", "protocol", "flags", "oos"]))
        value = draw(st.one_of(st.sampled_from(STATE_NAMES), WORDS))
        if field == "oos":
            oos = draw(st.sampled_from(["1", "4096", "", "x", "-1", "0 oos:1"]))
            rest = re.sub(r"oos:\S*", lambda m: "oos:" + oos, rest)
        elif field == "cs":
            first = re.sub(r"cs:\S*", lambda m: "cs:" + value, first, count=1)
        elif field in ("ro", "ds"):
            side = draw(st.booleans())
            pat = r"((?:ro|st):)(\S*)/(\S*)" if field == "ro" else r"(ds:)(\S*)/(\S*)"
            first = re.sub(pat, (lambda m: f"{m.group(1)}{value}/{m.group(3)}") if side
                           else (lambda m: f"{m.group(1)}{m.group(2)}/{value}"), first, count=1)
        elif field == "protocol":
            protocol = draw(st.sampled_from(["A", "B", "D", "", "C C"]))
            first = re.sub(r" ([ABC ]) (\S+)$", lambda m: f" {protocol} {m.group(2)}", first, count=1)
        else:
            flags = draw(st.sampled_from(
                ["s-----", "r", "r---------", "R-----", "r--u--", "x-----", "r---n-", "-r----", "r-----\0\0"]))
            first = re.sub(r" (\S+)$", lambda m: " " + flags, first, count=1)
        new = text.replace(block, first + "\n" + rest, 1)
        what = f"state: {_describe(block.partition(chr(10))[0])} -> {_describe(first)} {_describe(rest)}"
    elif op == "drop-minor":
        block = draw(st.sampled_from(blocks))
        new = text.replace(block, "", 1)
        what = f"drop minor {_describe(block)}"
    elif op == "copy-minor":
        block = draw(st.sampled_from(blocks))
        number = draw(st.sampled_from(_minors_in(world)))
        copy = re.sub(r"^([ \t]*)\d+:", lambda m: f"{m.group(1)}{number}:", block, count=1)
        at = draw(st.sampled_from([text.index(block), text.index(block) + len(block), len(text)]))
        new = text[:at] + copy + text[at:]
        what = f"copy minor {_describe(block)} as {number}"
    else:
        block = draw(st.sampled_from(blocks))
        number = draw(st.sampled_from(_minors_in(world)))
        new = text.replace(block, re.sub(r"^([ \t]*)\d+:", lambda m: f"{m.group(1)}{number:2d}:", block, count=1), 1)
        what = f"renumber {_describe(block)} to {number}"
    return replace(world, proc=new).noted(f"/proc/drbd: {what}")


def mutate_world(draw: Draw, world: World) -> World:
    channels = ["proc", "invocation", "answer-text", "answer-text", "answer-text", "answer", "answer"]
    if world.by_res is not None or "sh-resource" in " ".join(" ".join(k) for k in world.answers):
        channels.append("by-res")
    channel = draw(st.sampled_from(channels))
    if channel == "proc":
        return mutate_proc(draw, world)
    if channel == "invocation":
        return mutate_invocation(draw, world)
    if channel == "by-res":
        return mutate_by_res(draw, world)
    argvs = sorted(world.answers)
    if channel == "answer-text":
        argv = draw(st.sampled_from(argvs))
        return _retext(draw, world, argv)
    argvs += [gw.sh_minor(r) for r in world.resources] + [gw.dump_xml(r) for r in world.resources]
    argv = draw(st.sampled_from(sorted(set(argvs))))
    return _reanswer(draw, world, argv)


# -- scenarios: healthy and arbitrary well-formed states --------------------------------------------------------

NAMING = ["same", "target-full", "host-full", "mapped"]


def _naming(draw: Draw, host: str) -> Tuple[str, str, Tuple[Tuple[str, str], ...]]:
    """(DRBD host name, Pacemaker target, peer_names) naming the same node."""
    how = draw(st.sampled_from(NAMING))
    if how == "target-full":
        return host, host + ".example.com", ()
    if how == "host-full":
        return host + ".example.com", host, ()
    if how == "mapped":
        return "drbd-" + host, "node-" + host, (("node-" + host, "drbd-" + host),)
    return host, host, ()


def _pick(draw: Draw, healthy: str, pool: Sequence[str], sick: Any) -> str:
    """``healthy``, or (``sick``: 1 in 12; ``sick == "other"``: 1 in 2) any of ``pool``."""
    if not sick or draw(st.integers(0, 1 if sick == "other" else 11)) > 0:
        return healthy
    return str(draw(st.sampled_from(list(pool))))


@st.composite
def scenario8(draw: Draw, sick: bool = False) -> World:
    version = draw(st.sampled_from(gw.VERSIONS8))
    multi = version.startswith("8.4")
    host, target, peer_names = _naming(draw, draw(st.sampled_from(["beta", "pcmk-2", "b"])))
    count = draw(st.integers(1, 3))
    others = draw(st.integers(0, 2))
    widths = [draw(st.integers(1, 3)) if multi else 1 for _ in range(count + others)]
    minors = draw(st.lists(st.integers(0, 300), min_size=sum(widths), max_size=sum(widths), unique=True))
    resources = []
    for index, width in enumerate(widths):
        asked = index < count
        ill: Any = sick if asked else "other"
        volumes = []
        for vol in range(width):
            rest = draw(st.sampled_from(["", "", "a", "-p", "--u", "---n", "---bs"])) if multi else ""
            volumes.append(gw.Volume8(
                minor=minors.pop(0), volume=vol,
                cs=_pick(draw, "Connected", CSTATES8, ill), role=_pick(draw, "Primary", ROLES, ill),
                peer_role=_pick(draw, "Primary", ROLES, ill), disk=_pick(draw, "UpToDate", DISK_STATES, ill),
                peer_disk=_pick(draw, "UpToDate", DISK_STATES, ill), protocol=_pick(draw, "C", "AB", ill),
                io=_pick(draw, "r", "s", ill), flags_rest=rest,
                oos=int(_pick(draw, "0", ["1", "4096"], ill)),
                shown=_pick(draw, "yes", ["unconfigured", "no"], ill)))
        peer = host if not (sick and draw(st.integers(0, 11)) == 0) else draw(st.sampled_from(["gamma", "delta"]))
        resources.append(gw.Resource8(f"r{index}" if asked else f"other{index}", peer, tuple(volumes)))
    asked_names = tuple(r.name for r in resources[:count])
    fences: List[Tuple[str, str]] = []
    for res in resources:
        if (sick or res.name not in asked_names) and draw(st.integers(0, 7)) == 0:
            fences.append((res.name, draw(st.sampled_from(["new", "old"]))))
    s = gw.Scenario8(version=version, resources=tuple(resources), asked=asked_names, target=target,
                     peer_names=peer_names, by_res=draw(st.booleans()), fences=tuple(fences),
                     extra_unconfigured=tuple(m for m in draw(st.lists(st.integers(301, 310), max_size=2,
                                                                       unique=True))),
                     blank_lines=multi and draw(st.booleans()),
                     nul_flags=version == "8.3.1" and draw(st.booleans()),
                     mode="auto-promote" if sick and draw(st.integers(0, 9)) == 0 else "dual-primary")
    return gw.render8(s, f"generated 8.x {version}{' (any state)' if sick else ''}")


@st.composite
def scenario9(draw: Draw, sick: bool = False) -> World:
    layout = draw(st.sampled_from(["9.6", "9.2x"]))
    mode = draw(st.sampled_from(["dual-primary", "auto-promote"]))
    host, target, peer_names = _naming(draw, draw(st.sampled_from(["beta", "salt-node3"])))
    count = draw(st.integers(1, 2))
    others = draw(st.integers(0, 1))
    minors = iter(draw(st.lists(st.integers(0, 1100), min_size=9, max_size=9, unique=True)))
    resources = []
    for index in range(count + others):
        asked = index < count
        ill: Any = sick if asked else "other"
        volumes = list(range(draw(st.integers(1, 3))))
        devices = tuple(gw.Device9(v, next(minors), disk=_pick(draw, "UpToDate", DISK_STATES, ill),
                                   quorum=_pick(draw, "yes", ["no"], ill) == "yes") for v in volumes)
        peer_role = "Secondary" if mode == "auto-promote" and draw(st.booleans()) else "Primary"

        def peer_devices(state_ill: bool, vols: List[int]) -> Tuple[gw.PeerDevice9, ...]:
            if state_ill and draw(st.integers(0, 11)) == 0:
                vols = vols[:-1]
            return tuple(gw.PeerDevice9(v, replication=_pick(draw, "Established", REPLICATION9, state_ill),
                                        peer_disk=_pick(draw, "UpToDate", DISK_STATES, state_ill),
                                        oos=int(_pick(draw, "0", ["1", "8192"], state_ill))) for v in vols)

        name = host if not (sick and draw(st.integers(0, 11)) == 0) else "gamma"
        connections = [gw.Connection9(1, name, cstate=_pick(draw, "Connected", CSTATES9, ill),
                                      peer_role=_pick(draw, peer_role, ROLES, ill),
                                      peer_devices=peer_devices(ill, volumes),
                                      allow_two_primaries=_pick(draw, "yes", ["no"], ill) == "yes")]
        for extra in range(draw(st.integers(0, 2))):
            connections.append(gw.Connection9(2 + extra, ["delta", "epsilon"][extra],
                                              cstate=draw(st.sampled_from(CSTATES9)),
                                              peer_role=draw(st.sampled_from(ROLES)),
                                              peer_devices=peer_devices(True, volumes)))
        if draw(st.booleans()):
            connections.reverse()
        suspended = [_pick(draw, "no", ["yes"], ill) == "yes" for _ in range(4)]
        resources.append(gw.Resource9(
            f"r{index}" if asked else f"other{index}", devices, tuple(connections),
            role=_pick(draw, "Primary", ROLES, ill), node_id=0, suspended_user=suspended[0],
            suspended_no_data=suspended[1], suspended_fencing=suspended[2], suspended_quorum=suspended[3],
            auto_promote=_pick(draw, "yes", ["no"], ill) == "yes"))
    asked_names = tuple(r.name for r in resources[:count])
    fences: List[Tuple[str, str]] = []
    for res in resources:
        if (sick or res.name not in asked_names) and draw(st.integers(0, 7)) == 0:
            fences.append((res.name, draw(st.sampled_from(["new", "old"]))))
    s = gw.Scenario9(tuple(resources), asked_names, target, layout=layout, mode=mode, peer_names=peer_names,
                     fences=tuple(fences))
    return gw.render9(s, f"generated 9 ({layout}, {mode}){' (any state)' if sick else ''}")


BASELINES = gw.baselines()
HEALTHY = st.one_of(st.sampled_from(BASELINES), scenario8(), scenario9())
ANY_STATE = st.one_of(scenario8(sick=True), scenario9(sick=True))


@st.composite
def mutated_worlds(draw: Draw) -> World:
    world: World = draw(HEALTHY)
    for _ in range(draw(st.integers(1, 3))):
        world = mutate_world(draw, world)
    return world


# -- the properties -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", BASELINES, ids=[w.label for w in BASELINES])
def test_baseline_is_safe_and_allowed(world: World) -> None:
    oracle = judge(world)
    verdict = run_guard(world)
    assert oracle.safe, oracle.why
    assert verdict.allowed, explain(world, verdict, oracle)


@budget(100)
@given(HEALTHY)
def test_healthy_worlds_are_allowed(world: World) -> None:
    oracle = judge(world)
    verdict = run_guard(world)
    assert oracle.safe, explain(world, verdict, oracle)
    assert verdict.allowed, explain(world, verdict, oracle)


@budget(300)
@given(ANY_STATE)
def test_well_formed_states_agree_with_the_oracle(world: World) -> None:
    oracle = judge(world)
    verdict = run_guard(world)
    assert verdict.allowed == oracle.safe, explain(world, verdict, oracle)


@budget(500)
@given(mutated_worlds())
def test_no_mutation_turns_a_refusal_into_allowed(world: World) -> None:
    assert_allowed_implies_safe(world)


def baseline(label: str) -> World:
    found = [w for w in BASELINES if w.label.startswith(label)]
    assert len(found) == 1, label
    return found[0]


def _in_proc(world: World, old: str, new: str) -> World:
    assert world.proc is not None and world.proc.count(old) == 1, old
    return replace(world, proc=world.proc.replace(old, new))


@pytest.mark.parametrize("world", [
    _in_proc(baseline("8.4.2"), "\n 4: cs:WFConnection", "\n\n 4: cs:WFConnection"),           # a blank line
    _in_proc(baseline("8.4.2"), " 8: cs:StandAlone ro:Secondary/Unknown", " 8: cs:SyncSource ro:Secondary/Unknown"),
    _in_proc(baseline("8.4.2"), "ns:1048576 nr:0 dw:0 dr:1048776", "ns:1 nr:2 dw:3 dr:4"),     # statistics move on
    _in_proc(baseline("8.3.1 ganeti r1"), " 3: cs:SyncTarget", " 3: cs:StandAlone"),          # another resource
    baseline("8.4.11").with_answer(gw.CIB_QUERY, gw.ok(gw.render_cib(
        ["wwwdata", "other"], [("other", "new"), ("other", "old")], "pcmk-2"))),
    baseline("9 salt beijing dual").with_answer(gw.STATUS9, gw.ok(
        gw.fixture("drbd9-status-json-derived-dual-primary.txt").replace('"sent": 0', '"sent": 1024'))),
], ids=["blank line", "other minor resyncs", "statistics", "other resource", "fence of another resource",
        "9 statistics"])
def test_mutations_that_change_nothing_that_matters_stay_allowed(world: World) -> None:
    oracle = judge(world)
    verdict = run_guard(world)
    assert oracle.safe, oracle.why
    assert verdict.allowed, explain(world, verdict, oracle)


# -- the oracle refuses what is not safe (it is no rubber stamp either) -------------------------------------------


@pytest.mark.parametrize("name", [
    "drbd84-proc-pacemaker-connected-primary-8.4.11.txt",   # peer Secondary
    "drbd84-proc-ug84-inconsistent-8.4.1.txt",
    "drbd84-proc-ganeti-syncsource.txt",
    "drbd83-proc-ganeti-multi-minor.txt",
    "drbd80-proc-ganeti-multi-minor.txt",
])
def test_oracle_refuses_the_real_8x_samples_as_they_are(name: str) -> None:
    for world in BASELINES:
        if world.proc is not None and not world.proc.startswith("version: 9"):
            assert not judge(replace(world, proc=gw.fixture(name))).safe, world.label


@pytest.mark.parametrize("name", [
    "drbd9-status-json-salt-beijing-primary.txt",            # peer Secondary: not for dual-primary
    "drbd9-status-json-salt-shanghai-secondary.txt",
    "drbd9-status-json-derived-disconnected.txt",
    "drbd9-status-json-derived-peer-inconsistent.txt",
])
def test_oracle_refuses_the_real_9_samples_for_dual_primary(name: str) -> None:
    world = baseline("9 salt beijing dual")
    assert judge(world).safe
    assert not judge(world.with_answer(gw.STATUS9, gw.ok(gw.fixture(name)))).safe


def test_oracle_refuses_the_fence_constraints_and_a_show_without_two_primaries() -> None:
    world = baseline("9 salt beijing dual")
    fenced = world.with_answer(gw.CIB_QUERY, gw.ok(gw.fixture("cib-synthetic-fence-beijing.xml")))
    assert "fence constraint drbd-fence-by-handler-beijing-ms_drbd_beijing" in judge(fenced).why
    old = world.with_answer(gw.CIB_QUERY, gw.ok(gw.render_cib(["beijing"], [("beijing", "old")], "salt-node3")))
    assert "drbd-fence-by-handler-ms_drbd_beijing" in judge(old).why
    auto = baseline("9 salt beijing auto")
    assert judge(auto).safe
    one_volume = auto.with_answer(gw.SHOW9, gw.ok(gw.fixture("drbd9-show-json-drbdutils-one-volume.txt")))
    assert not judge(one_volume).safe


def test_oracle_reads_every_minor_sh_minor_lists() -> None:
    world = baseline("8.4.2")   # r0 on minors 0 and 1
    assert judge(world).safe
    sick = _in_proc(world, " 1: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----",
                    " 1: cs:Connected ro:Primary/Primary ds:UpToDate/Outdated C r-----")
    assert "disks ds:UpToDate/Outdated" in judge(sick).why
    more = world.with_answer(gw.sh_minor("r0"), gw.ok("0\n1\n4\n"))
    assert "minor 4" in judge(more).why
    assert world.proc is not None
    lines = world.proc.split("\n")
    at = lines.index(" 1: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----")
    gone = replace(world, proc="\n".join(lines[:at] + lines[at + 2:]))
    assert "minor 1 listed 0 times" in judge(gone).why
