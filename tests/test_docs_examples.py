"""The examples of docs/tokens.md, admin-api.md, anonymity.md and rtbf.md, run against a demo.

A fenced ```bash block preceded by the line `<!-- demo-example -->` is an example. The next fenced
block, preceded by `<!-- expected -->`, is its output: ```json (compared structurally) or ```text
(compared line by line). In both, a value written `<anything>` stands for what differs from run
to run: in JSON it matches any string or number (never null), in text any run of characters.
An example without its expected output fails the test, so the docs cannot rot silently.

Each document's examples run in order in one `bash -euo pipefail` process (they share shell
variables), from the repository root with PATH unchanged, against `intelgraph-privacy demo`
started here on free ports with a fresh data directory. `127.0.0.1:8080` and `.demo-data` in the
examples are replaced by the demo's real address and data directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import http

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/tokens.md", "docs/admin-api.md", "docs/anonymity.md", "docs/rtbf.md")
EXAMPLE_MARK = "<!-- demo-example -->"
EXPECTED_MARK = "<!-- expected -->"
DELIMITER = "@@@ docs example {} @@@"
_PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
_FENCE = re.compile(r"```(\S*)\s*$")


class DocFormatError(AssertionError):
    """A document's examples are not marked up as this test expects."""


@dataclass(frozen=True, slots=True)
class Example:
    """One example: where it is, the shell code, and the output the document shows for it."""

    doc: str
    line: int  # 1-based line of the ```bash fence
    code: str
    kind: str  # "json" or "text"
    expected: str

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


# -- reading the documents --------------------------------------------------------------------


def _fenced(lines: list[str], start: int) -> tuple[str, str, int]:
    """The block whose opening fence is at `start`: (language, body, index after its close)."""
    match = _FENCE.match(lines[start].strip())
    if match is None or not lines[start].lstrip().startswith("```"):
        raise DocFormatError(f"line {start + 1}: expected a fenced code block")
    body: list[str] = []
    for index in range(start + 1, len(lines)):
        if lines[index].strip() == "```":
            return match.group(1), "\n".join(body), index + 1
        body.append(lines[index])
    raise DocFormatError(f"line {start + 1}: the code block is never closed")


def _next_line(lines: list[str], index: int) -> int:
    """The index of the next non-blank line from `index` (len(lines) when none)."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def extract_examples(text: str, doc: str) -> list[Example]:
    """The examples of a document, each with its expected output; DocFormatError otherwise."""
    lines = text.splitlines()
    examples: list[Example] = []
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped == EXPECTED_MARK:
            raise DocFormatError(f"{doc}:{index + 1}: expected output with no example before it")
        if stripped.startswith("```"):
            # A block that is not an example: skip it whole (it may contain anything).
            index = _fenced(lines, index)[2]
            continue
        if stripped != EXAMPLE_MARK:
            index += 1
            continue
        fence = _next_line(lines, index + 1)
        if fence >= len(lines) or lines[fence].strip() != "```bash":
            raise DocFormatError(f"{doc}:{index + 1}: {EXAMPLE_MARK} must precede a ```bash block")
        _, code, index = _fenced(lines, fence)
        # Prose may follow; the next marker or code block must be the marked expected output.
        while index < len(lines) and lines[index].strip() not in (EXAMPLE_MARK, EXPECTED_MARK):
            if lines[index].strip().startswith("```"):
                break
            index += 1
        if index >= len(lines) or lines[index].strip() != EXPECTED_MARK:
            raise DocFormatError(
                f"{doc}:{fence + 1}: this example has no expected output "
                f"({EXPECTED_MARK} followed by a ```json or ```text block)"
            )
        index = _next_line(lines, index + 1)
        if index >= len(lines) or not lines[index].strip().startswith("```"):
            raise DocFormatError(f"{doc}:{fence + 1}: {EXPECTED_MARK} must precede a code block")
        kind, expected, index = _fenced(lines, index)
        if kind not in ("json", "text"):
            raise DocFormatError(f"{doc}:{fence + 1}: expected output must be ```json or ```text")
        examples.append(Example(doc, fence + 1, code, kind, expected))
    return examples


# -- comparing outputs ------------------------------------------------------------------------


def json_matches(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Differences between an expected JSON value (with `<placeholders>`) and an actual one."""
    if isinstance(expected, str) and _PLACEHOLDER.fullmatch(expected):
        if isinstance(actual, str | int | float) and not isinstance(actual, bool):
            return []
        return [f"{path}: {expected} stands for a string or number, got {actual!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        problems = [f"{path}: missing key {k!r}" for k in expected if k not in actual]
        problems += [f"{path}: unexpected key {k!r}" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            problems += json_matches(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected a list of {len(expected)}, got {actual!r}"]
        problems = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problems += json_matches(e, a, f"{path}[{i}]")
        return problems
    # Scalars: same type (True is not 1) and same value.
    if type(expected) is not type(actual) or expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def text_matches(expected: str, actual: str) -> list[str]:
    """Differences between expected text (with `<placeholders>`) and actual text, by line."""
    want = expected.rstrip("\n").splitlines()
    got = actual.rstrip("\n").splitlines()
    if len(want) != len(got):
        return [f"expected {len(want)} lines, got {len(got)}"]
    problems = []
    for number, (line, seen) in enumerate(zip(want, got, strict=True), start=1):
        pattern = ".+?".join(re.escape(part) for part in _PLACEHOLDER.split(line))
        if not re.fullmatch(pattern, seen.rstrip()):
            problems.append(f"line {number}: expected {line!r}, got {seen!r}")
    return problems


def output_problems(example: Example, output: str) -> list[str]:
    """Why `output` is not what the document shows for `example` (empty when it is)."""
    if example.kind == "text":
        return text_matches(example.expected, output)
    try:
        expected = json.loads(example.expected)
    except json.JSONDecodeError as exc:
        return [f"the document's expected JSON does not parse: {exc}"]
    try:
        actual = json.loads(output)
    except json.JSONDecodeError:
        return ["the output is not one JSON document"]
    return json_matches(expected, actual)


# -- the demo ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Demo:
    port: int
    data_dir: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`intelgraph-privacy demo` as a user starts it, on free ports, with a fresh data directory."""
    data_dir = tmp_path_factory.mktemp("docs-demo-data")
    port, upstream_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sidecar.cli", "demo", "--port", str(port),
            "--upstream-port", str(upstream_port), "--data-dir", str(data_dir), "--people", "300",
        ],
        cwd=ROOT,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    started = threading.Event()
    output: list[str] = []

    def drain() -> None:
        # Read everything the demo prints, so a full pipe never blocks it.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("Stop the demo"):
                started.set()
        started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert started.wait(120) and process.poll() is None, "".join(output)
        deadline = time.monotonic() + 60
        while http("GET", f"http://127.0.0.1:{port}/readyz", timeout=2).status != 200:
            assert time.monotonic() < deadline, "the demo did not become ready"
            time.sleep(0.1)
        yield Demo(port, data_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)


# -- running a document -----------------------------------------------------------------------


def _script(examples: list[Example], demo: Demo) -> str:
    parts = []
    for number, example in enumerate(examples):
        code = example.code.replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
        code = code.replace(".demo-data", shlex.quote(str(demo.data_dir)))
        assert ":8080" not in code and ":8081" not in code, example.where()
        parts.append(f"printf '%s\\n' {shlex.quote(DELIMITER.format(number))}\n{code}\n")
    return "".join(parts)


def _split(stdout: str, count: int) -> list[str]:
    """The output of each example, by the delimiter line printed before each."""
    outputs: list[list[str]] = []
    for line in stdout.splitlines(keepends=True):
        if len(outputs) < count and line.rstrip("\n") == DELIMITER.format(len(outputs)):
            outputs.append([])
        elif outputs:
            outputs[-1].append(line)
    return ["".join(lines) for lines in outputs]


@pytest.mark.parametrize("doc", DOCS)
def test_document_examples_give_the_documented_output(doc: str, demo: Demo, tmp_path: Path) -> None:
    examples = extract_examples((ROOT / doc).read_text(encoding="utf-8"), doc)
    assert examples, f"{doc} has no {EXAMPLE_MARK} examples"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _script(examples, demo)],
        cwd=ROOT,
        # TMPDIR: what the examples make with mktemp (keys, a vocabulary) stays in tmp_path.
        env={**os.environ, "RUST_BACKTRACE": "0", "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs = _split(done.stdout, len(examples))
    if done.returncode != 0:
        failed = examples[max(len(outputs) - 1, 0)]
        pytest.fail(
            f"{failed.where()}: the example exits {done.returncode}\n{failed.code}\n"
            f"--- stdout\n{outputs[-1] if outputs else done.stdout}\n--- stderr\n{done.stderr}"
        )
    assert len(outputs) == len(examples), done.stdout
    failures = []
    for example, output in zip(examples, outputs, strict=True):
        problems = output_problems(example, output)
        if problems:
            failures.append(
                f"{example.where()}:\n{example.code}\n--- documented\n{example.expected}\n"
                f"--- got\n{output}--- differences\n" + "\n".join(problems)
            )
    assert not failures, "\n\n".join(failures)


# -- the checker itself (no demo needed) ------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
def test_every_example_has_its_expected_output(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    examples = extract_examples(text, doc)
    assert len(examples) == text.count(EXAMPLE_MARK) == text.count(EXPECTED_MARK)
    assert all(e.code.strip() and e.expected.strip() for e in examples)


def test_an_example_without_expected_output_is_refused() -> None:
    bare = f"Intro.\n\n{EXAMPLE_MARK}\n```bash\necho hi\n```\n\nThen prose.\n"
    with pytest.raises(DocFormatError, match="no expected output"):
        extract_examples(bare, "bare.md")
    unmarked = f"{EXAMPLE_MARK}\n```bash\necho '{{}}'\n```\n\n```json\n{{}}\n```\n"
    with pytest.raises(DocFormatError, match="no expected output"):
        extract_examples(unmarked, "unmarked.md")
    orphan = f"{EXPECTED_MARK}\n```json\n{{}}\n```\n"
    with pytest.raises(DocFormatError, match="no example before it"):
        extract_examples(orphan, "orphan.md")
    marked = f"{EXAMPLE_MARK}\n```bash\necho 1\n```\n\nSee:\n\n{EXPECTED_MARK}\n```text\n1\n```\n"
    assert extract_examples(marked, "ok.md") == [Example("ok.md", 2, "echo 1", "text", "1")]


def test_placeholders_match_values_but_never_null_or_a_different_shape() -> None:
    expected = {"name": "<name>", "age": "<age>", "city": None, "tags": ["a"]}
    assert json_matches(expected, {"name": "X", "age": 3, "city": None, "tags": ["a"]}) == []
    assert json_matches(expected, {"name": None, "age": 3, "city": None, "tags": ["a"]})
    assert json_matches(expected, {"name": "X", "age": 3, "city": "Y", "tags": ["a"]})
    assert json_matches(expected, {"name": "X", "age": 3, "city": None, "tags": []})
    assert json_matches({"ok": True}, {"ok": 1})
    assert json_matches({"k": 1}, {"k": 1, "extra": 2})
    assert text_matches("revoked <jti>", "revoked 0123abcd\n") == []
    assert text_matches("revoked <jti>", "0123abcd was already revoked\n")
    assert text_matches("403", "200")
