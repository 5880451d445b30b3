"""A scripted CommandRunner for DRBD tests: answers by program and subcommand, records calls."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from livemig.run import CommandResult, CommandRunner, CommandTimeout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "drbd"

Answer = Union[CommandResult, Exception, Tuple[int, str]]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


class ScriptedRunner(CommandRunner):
    """Answers keyed by the first words of argv ("drbdsetup status", "cibadmin").

    The longest matching key wins. An unscripted command fails with exit 20.
    An Exception answer is raised (CommandTimeout for a hung tool).
    """

    def __init__(self, answers: Optional[Mapping[str, Answer]] = None) -> None:
        super().__init__()
        self.answers: Dict[str, Answer] = dict(answers or {})
        self.calls: List[Tuple[List[str], float, Optional[Mapping[str, str]]]] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert timeout >= 0
        self.calls.append((list(argv), timeout, env))
        words = list(argv)
        for size in range(len(words), 0, -1):
            key = " ".join(words[:size])
            if key in self.answers:
                answer = self.answers[key]
                if isinstance(answer, Exception):
                    raise answer
                if isinstance(answer, tuple):
                    return CommandResult(list(argv), answer[0], answer[1], "")
                return answer
        return CommandResult(list(argv), 20, "", f"{argv[0]}: not scripted")

    def argv_list(self) -> List[List[str]]:
        return [argv for argv, _timeout, _env in self.calls]


def hung(program: str) -> CommandTimeout:
    return CommandTimeout([program], f"{program} did not finish within 1.0s and was killed")
