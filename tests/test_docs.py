"""The documentation: the MkDocs site builds strictly, and every `nameorigin ...` command shown in README.md and
docs/*.md parses with the real argument parser (whole lines, flags and values)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nameorigin.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
# the pages of the site and the repository's own; drafts named docs/_from-*.md are not built (mkdocs.yml)
PAGES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("_from-")),
]
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
NOT_SHELL = {"python", "py", "pycon", "text", "json", "yaml", "toml", "csv"}
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}


def _blocks(text: str):
    """(language, [(line number, line), ...]) for each fenced code block of a Markdown text."""
    block, lang, fence = None, "", ""
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if block is None and m:
            block, lang, fence = [], m.group(2).lower(), m.group(1)
        elif block is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            yield lang, block
            block = None
        elif block is not None:
            block.append((number, line))


def _lexer(line: str) -> shlex.shlex:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return lexer


def _quote_open(command: str) -> bool:
    try:
        list(_lexer(command))
    except ValueError:  # "No closing quotation": the string goes on below
        return True
    return False


def _logical_lines(lang: str, lines):
    """Command lines of one block: prompts dropped, `\\` continuations and quotes across lines joined. In a
    `console` block only the lines after a `$ ` prompt are commands (the rest is output)."""
    command, start = None, 0
    for number, line in lines:
        if command is None:
            stripped = line.strip()
            if lang == "console":
                if not stripped.startswith("$ "):
                    continue
                stripped = stripped[2:]
            elif stripped.startswith("$ "):
                stripped = stripped[2:]
            command, start = "", number
            line = stripped
        if line.rstrip().endswith("\\"):
            command += line.rstrip()[:-1] + " "
            continue
        command += line
        if _quote_open(command):
            command += "\n"
            continue
        yield start, command
        command = None
    if command is not None:
        yield start, command


def _segments(line: str):
    """The simple commands of a shell line: split at pipes, `&&`, `;`, with comments and redirections
    (`> f`, `2>&1`, `< f`) removed."""
    tokens = list(_lexer(line))
    segment: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in OPERATORS:
            if segment:
                yield segment
            segment = []
        elif token and set(token) <= set("<>&"):
            if segment and segment[-1].isdigit():
                segment.pop()  # the 2 of 2> or 2>&1
            i += 1  # the redirection's target
        else:
            segment.append(token)
        i += 1
    if segment:
        yield segment


def nameorigin_args(segment: list[str]) -> list[str] | None:
    """The arguments after `nameorigin` (or `python -m nameorigin`, `torchrun ... -m nameorigin`), else None."""
    if segment[0] == "nameorigin":
        return segment[1:]
    for i in range(len(segment) - 1):
        if segment[i] == "-m" and segment[i + 1] == "nameorigin":
            return segment[i + 2 :]
    return None


def commands_in(text: str):
    """(line number, arguments) of every nameorigin command in the code blocks of a Markdown text."""
    for lang, lines in _blocks(text):
        if lang in NOT_SHELL:
            continue
        for number, line in _logical_lines(lang, lines):
            for segment in _segments(line):
                args = nameorigin_args(segment)
                if args is not None:
                    yield number, args


def _all_commands():
    for page in PAGES:
        for number, args in commands_in(page.read_text(encoding="utf-8")):
            yield pytest.param(args, id=f"{page.relative_to(ROOT)}:{number}")


COMMANDS = list(_all_commands())


def test_the_extractor_reads_shell_lines_as_a_shell_would():
    text = """
```console
$ nameorigin predict --top 2 Hinton   # a comment
Hinton    English   96.4%
nameorigin: 1 names, 0 errors
$ nameorigin predict --input names.txt \\
    --prior auto 2>err.txt | head -3 > out.csv
$ mkdir x && nameorigin split --out 'x y'
```

```sh
torchrun --standalone --nproc-per-node 2 -m nameorigin train --out m.safetensors
python bench/trust.py --data $NAMEORIGIN_DATA
```

```python
nameorigin.fit(pairs)
```
"""
    assert [args for _, args in commands_in(text)] == [
        ["predict", "--top", "2", "Hinton"],
        ["predict", "--input", "names.txt", "--prior", "auto"],
        ["split", "--out", "x y"],
        ["train", "--out", "m.safetensors"],
    ]
    assert [number for number, _ in commands_in(text)] == [3, 6, 8, 12]


def test_the_docs_show_commands_of_every_kind():
    """The parse test below covers what the pages show; this guards against an extractor that finds nothing."""
    shown = {args[0] for args in (p.values[0] for p in COMMANDS) if args}
    assert len(COMMANDS) >= 30
    assert {"predict", "train", "evaluate", "split", "compare", "attention", "serve"} <= shown


@pytest.mark.parametrize("args", COMMANDS)
def test_every_command_shown_parses(args):
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as e:
        pytest.fail(f"`nameorigin {shlex.join(args)}` does not parse (exit {e.code}): {err.getvalue().strip()}")


def test_the_readme_is_a_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert 'pip install -c constraints.txt -e ".[dev]"' in text and "\npytest" in text  # what CI runs


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"{page.name}: link to {target}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def test_the_site_builds_strictly(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if not _installed(m)]
    if missing:
        pytest.skip(
            f'the docs tools are not installed ({", ".join(missing)}): pip install -c constraints.txt -e ".[docs]"'
        )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "reference" / "index.html").read_text().count("nameorigin.api.fit") >= 1
