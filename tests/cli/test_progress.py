"""Progress bars on a terminal survive what libraries print while they are drawn."""

from __future__ import annotations

import sys

from squeeze.cli import _render


def test_a_library_writing_to_stderr_during_a_bar(monkeypatch, capsys):
    """NNCF and ONNX Runtime print to stderr while a bar is live; rich routes that through the
    bar's console, which must be a real one (it was a lazy proxy, and the write crashed)."""
    terminal = _render._LazyConsole(stderr=True, force_terminal=True, width=80)
    monkeypatch.setattr(_render, "stderr", terminal)
    open_task = _render.progress_factory(quiet=False)
    with open_task("Building", 2) as bar:
        print("a library's warning", file=sys.stderr)
        bar.advance(2, info="done")
    assert "a library's warning" in capsys.readouterr().err
