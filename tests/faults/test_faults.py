"""Faults a CI job meets, injected into the real CLI (``python -m squeeze`` in a subprocess).

Each test checks what squeeze promises (README, "Guarantees"): the documented exit code, one line
on stderr and no traceback, inputs byte-identical, no partial output and no temporary folder
left. Faults the OS will not produce on demand here (a full disk; permission denied, since these
machines run tests as root) are injected by a ``sitecustomize`` that makes one call raise the
same ``OSError`` the OS would.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from squeeze.model.tiny import write_rows


def squeeze(*args, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "squeeze", *map(str, args)],
        capture_output=True, text=True, env=full_env, timeout=timeout, check=False,
    )  # fmt: skip


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def assert_clean_failure(result, code: int, phrase: str, out: Path | None = None) -> None:
    """The documented exit code, one line naming the problem, nothing partial left."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


def inject(tmp_path: Path, code: str) -> dict[str, str]:
    """An environment whose Python runs ``code`` at start-up (a fault planted in squeeze)."""
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def test_an_output_where_a_file_stands_fails_before_any_work(tiny_classifiers, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = digest(tiny_classifiers["bert"])
    result = squeeze("export", tiny_classifiers["bert"], "-o", blocker / "sub" / "onnx")
    assert_clean_failure(result, 6, f"cannot use {blocker}: Not a directory")
    assert "choose another path" in result.stderr
    assert digest(tiny_classifiers["bert"]) == before and blocker.read_text() == "not a folder"


def test_a_full_disk_mid_write_leaves_nothing(tiny_classifiers, tmp_path):
    env = inject(
        tmp_path,
        """
        import errno, squeeze.engine.runner as runner
        write = runner.write_checkpoint
        def full(loaded, folder):
            write(loaded, folder)  # the weights were written, then the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "tokenizer.json"))
        runner.write_checkpoint = full
    """,
    )
    out = tmp_path / "sparse"
    before = digest(tiny_classifiers["bert"])
    result = squeeze("prune", tiny_classifiers["bert"], "-o", out, "--method", "magnitude",
                     "--sparsity", "0.5", env=env)  # fmt: skip
    assert_clean_failure(result, 6, "No space left on device (errno 28); free space there", out)
    assert digest(tiny_classifiers["bert"]) == before


def test_permission_denied_is_one_line(tiny_classifiers, tmp_path):
    env = inject(
        tmp_path,
        """
        import errno, tempfile
        real = tempfile.mkdtemp
        def refuse(*args, **kwargs):  # the output's folder refuses; /tmp does not
            if kwargs.get("dir") is None:
                return real(*args, **kwargs)
            raise PermissionError(errno.EACCES, "Permission denied", str(kwargs["dir"]))
        tempfile.mkdtemp = refuse
    """,
    )
    out = tmp_path / "onnx"
    result = squeeze("export", tiny_classifiers["bert"], "-o", out, env=env)
    assert_clean_failure(result, 6, "Permission denied (errno 13); check its permissions", out)


def test_sigterm_mid_step_removes_its_temporary_folder(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "slim"
    before = digest(trained_classifier)
    process = subprocess.Popen(
        [sys.executable, "-m", "squeeze", "prune", str(trained_classifier), "-o", str(out),
         "--method", "structured", "--heads", "0.5", "-d", str(order_csv), "--max-length", "32",
         "--finetune-steps", "100000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if p.name.startswith(".slim.tmp-")]:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the step never started writing"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # never leave a 100,000-step job running if the test fails
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_clean_failure(result, 128 + signal.SIGTERM, "squeeze prune was interrupted by SIGTERM",
                         out)  # fmt: skip
    assert digest(trained_classifier) == before


def _run(model, data, out, cache, *variants, extra=()):
    args = [
        "run",
        "--model",
        model,
        "-d",
        data,
        "--max-length",
        "32",
        "--max-samples",
        "300",
        "--runs",
        "2",
        "--cache-dir",
        cache,
        "-o",
        out,
        "--json",
        "--quiet",
        *extra,
    ]
    for variant in variants:
        args += ["--variant", variant]
    return squeeze(*args)


def _metrics(result) -> dict[str, float]:
    return {v["name"]: v["metric"] for v in json.loads(result.stdout)["variants"]}


def test_a_damaged_cache_entry_is_rebuilt_not_used(trained_classifier, order_csv, tmp_path):
    cache = tmp_path / "cache"
    first = _run(trained_classifier, order_csv, tmp_path / "one", cache, "quantize(int8)")
    assert first.returncode == 0, first.stderr
    (entry,) = [p for p in cache.iterdir() if p.name.endswith("-quantize")]
    model = entry / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # a truncated file
    again = _run(trained_classifier, order_csv, tmp_path / "two", cache, "quantize(int8)")
    assert again.returncode == 0, again.stderr
    notes = json.loads(again.stdout)["variants"][1]["notes"]
    assert any("damaged (model.onnx has" in n and "rebuilt it" in n for n in notes), notes
    assert _metrics(again) == _metrics(first)
    verify = squeeze("cache", "verify", "--cache-dir", cache)
    assert verify.returncode == 0 and "1 of 1 artifacts" in verify.stdout


def test_two_sweeps_on_one_cache_build_each_artifact_once(trained_classifier, order_csv, tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "squeeze", "sweep", str(trained_classifier), "-d",
            str(order_csv), "--max-length", "32", "--max-samples", "300", "--runs", "2",
            "--sparsity", "0.5", "--dtype", "int8", "--cache-dir", str(cache), "--json",
            "--quiet"]  # fmt: skip
    jobs = [
        subprocess.Popen(
            [*args, "-o", str(tmp_path / f"job{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [subprocess.CompletedProcess(j.args, j.wait(timeout=600), *j.communicate())
                   for j in jobs]  # fmt: skip
    finally:
        for job in jobs:
            job.kill()
    for result in results:
        assert result.returncode == 0, result.stderr
    assert _metrics(results[0]) == _metrics(results[1])
    entries = sorted(p.name.split("-", 1)[1] for p in cache.iterdir()
                     if p.is_dir() and not p.name.startswith("."))  # fmt: skip
    # One entry per artifact (int8, magnitude, magnitude's int8) and no staging left: whichever
    # job reached a step second waited for the other's build and reused it (which job builds
    # which step is a race; both are fine).
    assert entries == ["magnitude", "quantize", "quantize"]


def test_a_recipe_with_several_mistakes_names_them_all(tiny_classifiers, order_csv, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent(f"""
        model: {tiny_classifiers["bert"]}
        data: {{source: {order_csv}, text_column: txt}}
        variants:
          - magnitude(sparsity=0.5, sparsty=0.3)
          - prune(0.5)
          - quantize(int8)
    """)
    )
    out = tmp_path / "results"
    result = squeeze("run", recipe, "-o", out)
    assert_clean_failure(result, 2, "variants[1] step 1 magnitude(): unknown parameter 'sparsty'",
                         out)  # fmt: skip
    assert "variants[2] step 1: unknown step 'prune'" in result.stderr
    assert "data: column 'txt' not in order.csv" in result.stderr


def test_training_data_with_one_label_is_refused(tiny_lms, tmp_path):
    data = write_rows(tmp_path / "one.csv", [(f"text {i}", "positive") for i in range(40)],
                      ("text", "label"))  # fmt: skip
    out = tmp_path / "tuned"
    result = squeeze("finetune", tiny_lms["bert"], "-d", data, "-o", out, "--max-steps", "2")
    assert_clean_failure(result, 3, "holds 1 label(s) ('positive'); a classifier needs at least 2",
                         out)  # fmt: skip
    assert "--label-column" in result.stderr


def test_lengths_beyond_the_position_table(tiny_classifiers, order_csv):
    evaluated = squeeze("eval", tiny_classifiers["bert"], "-d", order_csv, "--max-length",
                        "5000", "--max-samples", "20", "--json")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert any(
        "inputs were truncated to 64 tokens" in n for n in json.loads(evaluated.stdout)["notes"]
    )
    timed = squeeze("bench", tiny_classifiers["bert"], "--seq", "5000", "--runs", "2")
    assert_clean_failure(timed, 2, "--seq 5000 is longer than this model's 64 positions")


class _Payload:
    """A pickle that would write a file when loaded: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickled_weights_need_consent_and_code_never_runs(tiny_classifiers, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "pickled"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifiers["bert"])
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()  # weights as an old checkpoint ships them: a pickle
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny_classifiers["bert"]).save_pretrained(folder)
    refused = squeeze("info", folder)
    assert_clean_failure(refused, 3, "only pickled ones (pytorch_model.bin), which can run code")
    assert "--allow-pickle" in refused.stderr
    assert squeeze("--allow-pickle", "info", folder).returncode == 0

    marker = tmp_path / "pwned.txt"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    evil = squeeze("--allow-pickle", "info", folder)
    assert_clean_failure(evil, 3, "refused to unpickle its weights")
    assert not marker.exists()


def test_an_unreachable_hub_fails_in_seconds(tmp_path):
    # A closed local port stands in for "no network"; without the check, huggingface_hub would
    # retry for about 25 s.
    env = {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    start = time.monotonic()
    result = squeeze("info", "someone/some-model", env=env, timeout=60)
    assert_clean_failure(result, 3, "could not be fetched from the Hugging Face Hub")
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("errno_code", [errno.EROFS, errno.ENAMETOOLONG])
def test_other_os_refusals_name_the_fix(tiny_classifiers, tmp_path, errno_code):
    env = inject(
        tmp_path,
        f"""
        import os, tempfile
        real = tempfile.mkdtemp
        def refuse(*args, **kwargs):
            if kwargs.get("dir") is None:
                return real(*args, **kwargs)
            raise OSError({errno_code}, os.strerror({errno_code}), str(kwargs["dir"]))
        tempfile.mkdtemp = refuse
    """,
    )
    out = tmp_path / "onnx"
    result = squeeze("export", tiny_classifiers["bert"], "-o", out, env=env)
    advice = {errno.EROFS: "read-only file system", errno.ENAMETOOLONG: "choose a shorter path"}
    assert_clean_failure(result, 6, advice[errno_code], out)


def interrupt_search(
    args: list[str], journal: Path, *, lines: int, env: dict[str, str] | None = None
) -> str:
    """Start a search (in ``env``, else this process's environment), send SIGINT once its
    journal holds ``lines`` records, and return its stderr after checking it exited
    128 + SIGINT."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not journal.is_file() or len(journal.read_text().splitlines()) < lines:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"the journal never reached {lines} records"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr
    return stderr


def test_an_interrupted_tune_resumes_from_its_journal(trained_classifier, order_csv, tmp_path):
    """SIGINT mid-search: nothing is written but the journal, the error says --resume, and the
    resumed search replays what was measured and finishes.

    The interrupted run's training steps are held (a planted pause before each step's interrupt
    check), so the signal lands inside the first recovery's training loop however fast the
    machine: a long real recovery did the same, but the resumed search then paid for it on every
    candidate (300 steps each, most of this test's 270 s)."""
    out, journal = tmp_path / "tuned", tmp_path / "tuned.tune" / "journal.jsonl"
    args = [sys.executable, "-m", "squeeze", "tune", str(trained_classifier), "-o", str(out),
            "-d", str(order_csv), "--max-length", "32", "--runs", "5", "--amounts", "0.5",
            "--layers", "1", "--recovery-steps", "20", "--quantize", "dynamic",
            "--max-accuracy-drop", "50", "--cache-dir", str(tmp_path / "cache"),
            "--quiet"]  # fmt: skip
    env = inject(
        tmp_path,
        """
        import time, squeeze.train.loop as loop
        check = loop.stop_if_interrupted
        def held():
            time.sleep(1.0)  # 20 steps take 20 s here: the test interrupts the first of them
            check()
        loop.stop_if_interrupted = held
    """,
    )
    # Baseline, int8 and the unrecovered prune measured (7 records): the first recovery runs.
    stderr = interrupt_search(args, journal, lines=7, env={**os.environ, **env})
    assert "--resume" in stderr and "Traceback" not in stderr and not out.exists()
    measured = journal.read_text().splitlines()
    assert len(measured) == 7  # the recovery's own record never came
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    trace = json.loads((out / "trace.json").read_text())["trials"]
    assert trace[0]["chain"] == "quantize(dtype=int8)" and len(trace) >= 2
    assert not journal.parent.exists()
