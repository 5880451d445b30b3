#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write a man page (roff) for an argparse command from its --help output.

Usage (what debian/rules and rpm/livemig.spec run at build time, with the
package on PYTHONPATH):

    tools/cli2man.py --name livemig --section 8 --source "livemig 0.1.0" \\
        --entry-point livemig.cli.main:main > livemig.8

The command is run as ``<name> --help`` and, for every sub-command listed in
the ``{a,b,...}`` choices of its usage line, as ``<name> <sub> --help``.
Sections of the help (``options:``, ``positional arguments:``, ...) become
man sections; option and argument lists, and an epilog's lists in argparse's
layout ("  TAG  text": exit statuses, environment variables), become tagged
paragraphs; an epilog's free text becomes paragraphs; anything else is kept
verbatim (.nf), so nothing is lost. The NAME line is the description's first
sentence (or --summary), at most 80 characters.
Run with COLUMNS=80 and a fixed SOURCE_DATE_EPOCH date: the output is
reproducible.  Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from typing import Iterable, List, Optional, Sequence, Tuple

from roff import page_date, roff_escape, roff_literal  # tools/roff.py, beside this script


class Runner:
    """Runs the command with extra arguments and returns its help text."""

    def __init__(self, name: str, entry_point: Optional[str], command: Sequence[str]) -> None:
        if entry_point:
            module, _, func = entry_point.partition(":")
            code = (f"import sys; sys.argv[0] = {name!r}; "
                    f"from {module} import {func} as main; sys.exit(main())")
            self.argv = [sys.executable, "-c", code]
        elif command:
            self.argv = list(command)
        else:
            self.argv = [name]

    def help(self, *words: str) -> str:
        env = dict(os.environ, COLUMNS="80", LC_ALL="C.UTF-8")
        env.pop("PYTHONSTARTUP", None)
        proc = subprocess.run(self.argv + list(words) + ["--help"], env=env, check=False,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise SystemExit(f"cli2man: {' '.join(self.argv + list(words))} --help failed "
                             f"(exit {proc.returncode}):\n{proc.stderr}")
        return proc.stdout


def split_help(text: str) -> Tuple[str, List[str], List[Tuple[str, List[str]]]]:
    """(usage, description lines, [(section title, lines)]) of an argparse help text.

    A section starts at an unindented "title:" line; an unindented line after a blank
    line that is no title (an epilog's paragraph) starts a section without a title
    (free text), as does one straight after an argument list, whose lines are all
    indented. The usage keeps argparse's line breaks (and its continuation indent,
    less the width of "usage: ")."""
    lines = text.rstrip("\n").split("\n")
    usage: List[str] = []
    index = 0
    while index < len(lines) and lines[index].strip():
        usage.append(lines[index])
        index += 1
    description: List[str] = []
    sections: List[Tuple[str, List[str]]] = []
    blank = False
    for line in lines[index:]:
        header = re.fullmatch(r"(\S.*):", line)
        unindented = bool(line.strip()) and not line.startswith(" ")
        if header and unindented:
            sections.append((header.group(1), []))
        elif sections and unindented and (blank or sections[-1][0]):
            sections.append(("", [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            description.append(line)
        blank = not line.strip()
    if usage and usage[0].lower().startswith("usage: "):
        width = len("usage: ")
        usage = [usage[0][width:]] + [line[width:] if line[:width].isspace() else line.strip()
                                      for line in usage[1:]]
    return "\n".join(line.rstrip() for line in usage), description, sections


_GROUP_HEADER = re.compile(r"^  (\S+)$")
_GROUP_CHOICE = re.compile(r"^    ([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\s{2,}\S.*)?$")


def subcommands(usage: str, sections: Sequence[Tuple[str, List[str]]] = ()) -> List[str]:
    """The sub-commands: the words of the first "{a,b,c} ..." group of the usage line or,
    when the group has a metavar (``COMMAND ...``), the choices argparse lists one
    level deeper under that metavar's line in the help."""
    # "{a,b} ..." is a sub-command group; "[--mode {a,b}]" only an option's choices.
    match = re.search(r"(?:^|\s)\{([A-Za-z0-9_,-]+)\} \.\.\.", usage)
    if match:
        return match.group(1).split(",")
    for _title, lines in sections:
        for index, line in enumerate(lines):
            if not _GROUP_HEADER.match(line):
                continue
            names = []
            for following in lines[index + 1:]:
                choice = _GROUP_CHOICE.match(following)
                if choice:
                    names.append(choice.group(1))
                elif following.startswith("     "):
                    continue  # the wrapped help of the choice before
                else:
                    break
            if names:
                return names
    return []


def prose(lines: Sequence[str]) -> List[str]:
    """Free text: blank-line separated paragraphs, indentation dropped."""
    out: List[str] = []
    para: List[str] = []
    for line in list(lines) + [""]:
        if line.strip():
            para.append(line.strip())
        elif para:
            if out:
                out.append(".PP")
            out.append(roff_escape(" ".join(para)))
            para = []
    return out


# The tag: words with single spaces between ("-t, --timeout SECONDS", "0"); two or more end it.
_ITEM = re.compile(r"^  (\S+(?: \S+)*)(?:\s{2,}(\S.*))?$")


def _next_is_choice(lines: Sequence[str], line: str) -> bool:
    following = list(lines)[list(lines).index(line) + 1:]
    return bool(following) and bool(_GROUP_CHOICE.match(following[0]))


def item_list(lines: Sequence[str]) -> List[str]:
    """An argparse list ("  -x, --long ARG   text" with deeper continuation lines)
    as .TP paragraphs; verbatim when it does not look like one."""
    items: List[Tuple[str, List[str]]] = []
    loose: List[str] = []
    # The choices of a sub-command group are listed one level deeper under their
    # "{a,b,c}" line: lift them to items of their own.
    lifted: List[str] = []
    in_group = False
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if indent == 2 and _GROUP_HEADER.match(line) and _next_is_choice(lines, line):
            in_group = True
            continue
        if in_group and indent >= 4:
            lifted.append(line[2:])
            continue
        in_group = False
        lifted.append(line)
    lines = lifted
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        match = _ITEM.match(line) if indent == 2 else None
        if match:
            items.append((match.group(1), [match.group(2)] if match.group(2) else []))
        elif items and indent > 2:
            items[-1][1].append(line.strip())
        else:
            loose.append(line)
    if loose or not items:
        return [".nf"] + [roff_escape(line) for line in lines if line.strip()] + [".fi"]
    out: List[str] = []
    for tag, text in items:
        out.append(".TP")
        out.append(f"\\fB{roff_literal(tag)}\\fR")
        out.append(roff_escape(" ".join(text)) if text else "\\&")
    return out


def man_ref(ref: str) -> str:
    """"name(8)" as a roff reference: the name in bold."""
    match = re.fullmatch(r"([^()\s]+)\(([0-9][a-z]*)\)", ref.strip())
    if not match:
        return roff_escape(ref)
    return f"\\fB{roff_literal(match.group(1))}\\fR({match.group(2)})"


_ARGPARSE_SECTIONS = {"options", "optional arguments", "positional arguments"}


def verbatim(lines: Sequence[str]) -> List[str]:
    """Pre-formatted text (an epilog, say), common indentation removed."""
    body = list(lines)
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    indent = min((len(line) - len(line.lstrip(" ")) for line in body if line.strip()), default=0)
    return [".nf"] + [roff_escape(line[indent:]) if line.strip() else ".sp" for line in body] + [".fi"]


_TAGGED = re.compile(r"^  (\S+(?: \S+)*)\s{2,}\S")


def render_section(title: str, lines: Sequence[str]) -> List[str]:
    """argparse's argument lists, and lists in its layout ("  TAG  text"), as tagged
    paragraphs; free text as paragraphs; anything else verbatim."""
    tags = [line.split()[0] for line in lines if re.match(r"^  \S", line)]
    if title.lower() in _ARGPARSE_SECTIONS or (tags and all(t.startswith("-") for t in tags)):
        return item_list(lines)
    body = [line for line in lines if line.strip()]
    if not title or not body:
        return prose(lines)
    tagged = [_TAGGED.match(line) for line in body if re.match(r"^  \S", line)]
    if tagged and all(match is not None and len(match.group(1)) <= 24 for match in tagged):
        return item_list(lines)
    if len({len(line) - len(line.lstrip(" ")) for line in body}) == 1:
        return prose(lines)
    return verbatim(lines)


def summary_of(name: str, description: Sequence[str]) -> str:
    """The NAME line: the description's first sentence, without a leading "name:"."""
    text = next((" ".join(p.split()) for p in "\n".join(description).split("\n\n") if p.strip()),
                f"the {name} command")
    if text.lower().startswith(name.lower() + ":"):
        text = text[len(name) + 1:].strip()
    text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text


#: longer NAME lines are cut or wrapped by whatis, apropos and lexgrog
MAX_SUMMARY = 80


def collect(runner: Runner, words: Tuple[str, ...], usage: str,
            sections: Sequence[Tuple[str, List[str]]], depth: int = 3) -> List[Tuple[Tuple[str, ...], str]]:
    """(command words, help text) of every sub-command, depth first."""
    found: List[Tuple[Tuple[str, ...], str]] = []
    if depth == 0:
        return found
    for sub in subcommands(usage, sections):
        path = words + (sub,)
        text = runner.help(*path)
        found.append((path, text))
        sub_usage, _, sub_sections = split_help(text)
        found += collect(runner, path, sub_usage, sub_sections, depth - 1)
    return found


def build_page(runner: Runner, name: str, section: str, source: str, date: str,
               manual: str, see_also: Sequence[str] = (), summary: Optional[str] = None) -> str:
    usage, description, sections = split_help(runner.help())
    summary = summary or summary_of(name, description)
    if len(f"{name} - {summary}") > MAX_SUMMARY:
        raise SystemExit(f"cli2man: the NAME line would be {len(name) + 3 + len(summary)} characters "
                         f"(at most {MAX_SUMMARY}): shorten the description's first sentence, or give "
                         f"--summary: {summary!r}")
    commands = collect(runner, (), usage, sections)

    out: List[str] = [
        f'.\\" Generated by tools/cli2man.py from "{name} --help"; do not edit.',
        f'.TH {roff_literal(name.upper())} {section} "{date}" "{roff_escape(source)}" "{roff_escape(manual)}"',
        ".SH NAME",
        f"{roff_literal(name)} \\- {roff_escape(summary)}",
        ".SH SYNOPSIS",
        ".nf",
        roff_literal(usage),
    ]
    for _path, text in commands:
        out.append(roff_literal(split_help(text)[0]))
    out += [".fi", ".SH DESCRIPTION"]
    out += prose(description) or [roff_escape(summary) + "."]
    for title, lines in sections:
        out.append(f".SH {roff_escape(title.upper())}" if title else ".PP")
        out += render_section(title, lines)
    if commands:
        out.append(".SH COMMANDS")
        for path, text in commands:
            sub_usage, sub_desc, sub_sections = split_help(text)
            out.append(f'.SS "{roff_literal(" ".join((name,) + path))}"')
            out += [".nf", roff_literal(sub_usage), ".fi"]
            if any(line.strip() for line in sub_desc):
                out.append(".PP")
                out += prose(sub_desc)
            for title, lines in sub_sections:
                body = render_section(title, lines)
                out.append(".PP")
                if title:
                    out.append(f"\\fI{roff_escape(title)}:\\fR")
                    if body and body[0] not in (".TP", ".nf"):
                        out.append(".br")  # free text under a title: on the next line
                out += body
    if see_also:
        out += [".SH SEE ALSO", ", ".join(man_ref(ref) for ref in see_also)]
    return "\n".join(out) + "\n"


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="command name (page name)")
    parser.add_argument("--section", default="8", help="man section (default: 8)")
    parser.add_argument("--source", default="", help='page footer, e.g. "livemig 0.1.0"')
    parser.add_argument("--summary", help="the NAME line's text (default: the description's first sentence)")
    parser.add_argument("--manual", default="System Administration", help="page header title")
    parser.add_argument("--date", help="page date (default: SOURCE_DATE_EPOCH or today)")
    parser.add_argument("--entry-point", help="module:function to run (as python3 -c) instead of "
                        "a command on PATH")
    parser.add_argument("-o", "--output", default="-", help="output file (default: standard output)")
    parser.add_argument("--see-also", action="append", default=[], metavar="PAGE(SECTION)",
                        help="a page for the SEE ALSO section (repeatable)")
    parser.add_argument("command", nargs="*", help="command line to run (default: NAME)")
    args = parser.parse_args(None if argv is None else list(argv))
    runner = Runner(args.name, args.entry_point, args.command)
    text = build_page(runner, args.name, args.section, args.source, page_date(args.date), args.manual,
                      args.see_also, args.summary)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
