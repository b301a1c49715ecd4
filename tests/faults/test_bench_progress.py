"""``gentool bench`` is never silent for minutes: a bar over its runs on a terminal's
stderr, naming the operation; none where stderr is a file or a pipe."""

import io
import json

from rich.console import Console

import gentool.bench as bench
from gentool.cli import main

ARGS = ["bench", "maf", "--batch-size", "8", "--sample-batch", "2", "--repeats", "2"]


def test_bench_shows_each_operation_on_a_terminal(monkeypatch, capsys):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(bench, "stderr_console", lambda: terminal)
    assert main([*ARGS, "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout stays the report alone
    shown = screen.getvalue()
    for operation in report["ops"]:
        assert f"bench maf: {operation}" in shown, operation
    runs = len(report["ops"]) * 3  # a warm-up and two timed runs each
    assert f"{runs}/{runs}" in shown


def test_no_bar_where_stderr_is_no_terminal(capsys):
    assert main([*ARGS, "--device", "cpu", "--json"]) == 0
    assert capsys.readouterr().err == ""
