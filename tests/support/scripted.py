"""The one scripted CommandRunner the unit tests use: records every call, answers from a script.

Two kinds of script:
- a mapping keyed by the first words of argv ("drbdsetup status", "cibadmin"): the longest
  matching key wins; an unscripted command fails with exit 20;
- a list of answers handed out in order: once it is used up every command succeeds with no output.

An answer is a CommandResult, an Exception (raised: CommandTimeout for a hung tool) or
(returncode, stdout). `calls` holds each argv; `records` holds (argv, timeout, env).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from livemig.run import CommandResult, CommandRunner

Answer = Union[CommandResult, Exception, Tuple[int, str]]


class ScriptedRunner(CommandRunner):
    def __init__(self, answers: Union[Mapping[str, Answer], List[Answer], None] = None) -> None:
        super().__init__()
        self.answers: Union[Dict[str, Answer], List[Answer]] = (
            list(answers) if isinstance(answers, list) else dict(answers or {}))
        self.calls: List[List[str]] = []
        self.records: List[Tuple[List[str], float, Optional[Mapping[str, str]]]] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert timeout >= 0
        self.calls.append(list(argv))
        self.records.append((list(argv), timeout, env))
        answer = self._answer(list(argv))
        if answer is None:
            code, err = (0, "") if isinstance(self.answers, list) else (20, f"{argv[0]}: not scripted")
            return CommandResult(list(argv), code, "", err)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, tuple):
            return CommandResult(list(argv), answer[0], answer[1], "")
        return answer

    def _answer(self, words: List[str]) -> Optional[Answer]:
        if isinstance(self.answers, list):
            return self.answers.pop(0) if self.answers else None
        for size in range(len(words), 0, -1):
            key = " ".join(words[:size])
            if key in self.answers:
                return self.answers[key]
        return None

    def argv_list(self) -> List[List[str]]:
        return list(self.calls)
