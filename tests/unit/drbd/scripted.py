"""DRBD test helpers: the recorded tool outputs and a hung tool; the runner is tests.support.scripted."""

from __future__ import annotations

from pathlib import Path

from livemig.run import CommandTimeout
from tests.support.scripted import Answer, ScriptedRunner

__all__ = ["FIXTURES", "Answer", "ScriptedRunner", "fixture", "hung"]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "drbd"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def hung(program: str) -> CommandTimeout:
    return CommandTimeout([program], f"{program} did not finish within 1.0s and was killed")
