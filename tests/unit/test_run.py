"""livemig.run.CommandRunner against real processes: output caps, process groups, timeouts.

A tool that prints without end (``yes``), or far more than expected (300 MB of
``drbdsetup`` output on a host full of resources), must cost at most the cap
in memory: it is killed with its process group and the call raises
CommandOutputTooLarge, which callers turn into a refusal like any CommandError.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from livemig.drbd.state import DrbdStateError
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    MIB,
    CommandError,
    CommandOutputTooLarge,
    CommandRunner,
    CommandTimeout,
)

YES = "/usr/bin/yes"


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int) -> bool:
    for _ in range(200):  # bounded: SIGKILL takes effect at once, reaping by init may lag
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_defaults() -> None:
    assert DEFAULT_MAX_STDOUT == 16 * MIB
    assert 0 < DEFAULT_MAX_STDERR < DEFAULT_MAX_STDOUT


def test_endless_stdout_is_cut_off_and_the_process_group_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    argv = ["sh", "-c", 'sleep 600 & echo $! > "$1"; exec yes', "sh", str(pidfile)]
    with pytest.raises(CommandOutputTooLarge) as caught:
        CommandRunner().run(argv, timeout=60, max_stdout=MIB)
    error = caught.value
    assert isinstance(error, CommandError) and error.stream == "stdout" and error.limit == MIB
    assert str(error) == "sh wrote more than 1 MiB to stdout and was killed (output cap; see livemig.run)"
    assert wait_gone(int(pidfile.read_text())), "the helper in the tool's process group still runs"


def test_endless_stderr_is_cut_off() -> None:
    with pytest.raises(CommandOutputTooLarge, match="more than 64 KiB to stderr") as caught:
        CommandRunner().run(["sh", "-c", "yes >&2"], timeout=60, max_stderr=64 * 1024)
    assert caught.value.stream == "stderr"


def test_the_cap_is_exact() -> None:
    runner = CommandRunner()
    result = runner.run(["head", "-c", str(MIB), "/dev/zero"], timeout=60, max_stdout=MIB)
    assert result.ok and len(result.stdout) == MIB
    with pytest.raises(CommandOutputTooLarge):
        runner.run(["head", "-c", str(MIB + 1), "/dev/zero"], timeout=60, max_stdout=MIB)
    assert runner.run(["sh", "-c", "printf abc >&2"], timeout=60, max_stderr=3).stderr == "abc"
    with pytest.raises(CommandOutputTooLarge):
        runner.run(["sh", "-c", "printf abcd >&2"], timeout=60, max_stderr=3)


def test_the_default_stdout_cap() -> None:
    runner = CommandRunner()
    assert len(runner.run(["head", "-c", str(DEFAULT_MAX_STDOUT), "/dev/zero"], timeout=60).stdout) \
        == DEFAULT_MAX_STDOUT
    with pytest.raises(CommandOutputTooLarge, match="more than 16 MiB to stdout"):
        runner.run(["head", "-c", str(DEFAULT_MAX_STDOUT + 1), "/dev/zero"], timeout=60)


def test_300_mb_of_output_costs_at_most_about_the_cap_in_memory() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CommandOutputTooLarge):
            CommandRunner().run(["head", "-c", str(300 * MIB), "/dev/zero"], timeout=120)
        with pytest.raises(CommandOutputTooLarge):
            CommandRunner().run([YES], timeout=120)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * DEFAULT_MAX_STDOUT, f"peak {peak / MIB:.0f} MiB"


def test_output_within_the_cap_is_returned_whole_while_stdin_is_fed() -> None:
    data = "".join(f"{i:08d}\n" for i in range(500_000))  # 4.5 MiB each way: no pipe deadlock
    result = CommandRunner().run(["cat"], timeout=60, stdin=data)
    assert result.ok and result.stdout == data
    assert CommandRunner().run(["cat"], timeout=60, stdin="").stdout == ""


def test_a_child_that_does_not_read_its_stdin() -> None:
    result = CommandRunner().run(["sh", "-c", "exec 0<&-; echo done"], timeout=60, stdin="x" * (4 * MIB))
    assert result.ok and result.stdout == "done\n"


def test_still_bounded_by_the_timeout() -> None:
    with pytest.raises(CommandTimeout):
        CommandRunner().run(["sh", "-c", "while :; do echo x; sleep 0.01; done"], timeout=0.5)
    with pytest.raises(CommandTimeout):  # output closed, process still running
        CommandRunner().run(["sh", "-c", "exec >&- 2>&-; sleep 600"], timeout=0.5)


def test_argv_only_never_a_shell() -> None:
    assert CommandRunner().run(["echo", "$(id)", ";", "`id`"], timeout=10).stdout == "$(id) ; `id`\n"


def test_command_runner_clamps_its_timeout() -> None:
    assert CommandRunner().run(["/bin/true"], timeout=1e12).ok
    assert CommandRunner().run(["/bin/true"], timeout=30 * 24 * 3600.0).ok


def test_the_drbd_reader_turns_too_much_output_into_a_refusal(tmp_path: Path) -> None:
    tool = tmp_path / "drbdsetup"
    tool.write_text(f"#!/bin/sh\nexec {YES} '{{\"resource\": 1}}'\n", encoding="ascii")
    tool.chmod(0o755)
    reader = DrbdReader(CommandRunner(path=str(tmp_path)), Deadline(60))
    with pytest.raises(DrbdStateError, match="wrote more than 16 MiB to stdout"):
        reader.run_tool(["drbdsetup", "status", "--json"])
