"""Fenced code blocks of the project's Markdown, and which of them the tests run.

A block's info string is its language and then words: `sh norun`, `python recipe=receiver.py`.

- README.md: every shell block (`sh`, `bash`, `shell`) is run, in order, unless its info
  string says `norun` (shown, never run: say why in the text) or `setup` (the fresh-machine
  commands, `make run` and `make test`, which the README test stands in for).
- docs/*.md: a shell block is run only if its info string says `run`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SHELLS = frozenset({"sh", "bash", "shell"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    words: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def option(self, name: str) -> str | None:
        """The value of `name=value` in the info string, if there."""
        for word in self.words:
            key, _, value = word.partition("=")
            if key == name and value:
                return value
        return None

    @property
    def is_shell(self) -> bool:
        return self.language in SHELLS


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
        ):
            body.append(lines[j])
            j += 1
        language = info[0].lower() if info else ""
        found.append(Block(path, i + 1, language, tuple(info[1:]), "\n".join(body) + "\n"))
        i = j + 1
    return found


def readme_runs(block: Block) -> bool:
    return block.is_shell and not {"norun", "setup"} & set(block.words)


def docs_runs(block: Block) -> bool:
    return block.is_shell and "run" in block.words


def runnable() -> list[Block]:
    """The blocks the README test runs, in order: README.md's, then docs/*.md's by file name."""
    chosen = [b for b in blocks(README) if readme_runs(b)]
    for path in sorted(DOCS.glob("*.md")):
        chosen += [b for b in blocks(path) if docs_runs(b)]
    return chosen
