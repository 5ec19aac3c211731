"""Exit codes a CI job can act on: a bug in squeeze is 70, never 1 (a failed gate); a full disk
is 6 whichever library hit it. Faults are planted by a ``sitecustomize`` (see test_faults)."""

from __future__ import annotations

from test_faults import assert_clean_failure, digest, inject, squeeze

MAGNITUDE = ("--method", "magnitude", "--sparsity", "0.5")


def test_a_bug_exits_70_with_one_line_and_the_traceback_on_request(tiny_classifiers, tmp_path):
    env = inject(
        tmp_path,
        """
        import squeeze.engine.runner as runner
        def broken(loaded, folder):
            raise KeyError("a bug planted by the test")
        runner.write_checkpoint = broken
    """,
    )
    out = tmp_path / "sparse"
    result = squeeze("prune", tiny_classifiers["bert"], "-o", out, *MAGNITUDE, env=env)
    assert_clean_failure(result, 70, "internal error: KeyError: 'a bug planted by the test'", out)
    assert "SQUEEZE_DEBUG=1 shows the traceback; please report it" in result.stderr
    debug = squeeze("prune", tiny_classifiers["bert"], "-o", out, *MAGNITUDE,
                    env={**env, "SQUEEZE_DEBUG": "1"})  # fmt: skip
    assert debug.returncode != 0 and "Traceback" in debug.stderr and not out.exists()


def test_a_full_disk_reported_by_safetensors_exits_6(tiny_classifiers, tmp_path):
    # The text safetensors 0.8 raised on a full tmpfs, not an OSError (checked by hand).
    env = inject(
        tmp_path,
        """
        import safetensors, safetensors.torch
        def full(*args, **kwargs):
            raise safetensors.SafetensorError(
                "Error while serializing: I/O error: No space left on device (os error 28)"
            )
        safetensors.torch.save_file = full
    """,
    )
    out = tmp_path / "sparse"
    before = digest(tiny_classifiers["bert"])
    result = squeeze("prune", tiny_classifiers["bert"], "-o", out, *MAGNITUDE, env=env)
    assert_clean_failure(result, 6, "No space left on device (errno 28); free space there", out)
    assert digest(tiny_classifiers["bert"]) == before
