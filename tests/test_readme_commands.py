"""The README's example commands, run from the repository root as it says, write only into
folders git ignores: trying the example leaves `git status` clean."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_OPTIONS = ("--out", "--blend", "--render")


def _example_commands() -> list[list[str]]:
    """Command lines inside the README's code blocks that run an ``--example`` photo."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines()
            if "--example" in line and "-m " in line]


def test_readme_example_writes_into_ignored_folders():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    commands = _example_commands()
    assert commands, "the README shows no --example command"
    for words in commands:
        outputs = {words[i + 1]: w for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS}
        assert "--out" in words, f"{' '.join(words)}: writes a default folder into the working directory"
        for path, option in outputs.items():
            # --out is a folder (probe a file the engine writes into it); --blend/--render files.
            probe = Path(path) / "reconstruction.json" if option == "--out" else Path(path)
            done = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe.as_posix()], cwd=ROOT)
            assert done.returncode == 0, f"{' '.join(words)}: {path} is not ignored by git"
