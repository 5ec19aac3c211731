"""squeeze's built-in calibration text: what static int8 calibrates on when no data is given.

Static int8 fixes each activation's range from sample inputs, so without the user's data it
used to be refused, and ``auto`` had no static candidate: on CPUs with VNNI or AMX, where
OpenVINO's static int8 is the fastest path, the default could not reach it. ``calibration.txt``
beside this module holds 512 texts written for squeeze (so it ships under the project's
Apache-2.0 licence): reviews, support messages, search queries, news-style reports, science,
finance, legal clauses, code prose, chat with emoji and hashtags, numbers, URLs, in short,
medium and long lengths, about a tenth in eleven other languages. What activation ranges need
is variety of tokens and lengths, not the user's domain; the agreement check against fp32 (on
the other half of the texts) and the accuracy gate still judge the result, and the step's note
names the text it calibrated on.
"""

from __future__ import annotations

from importlib import resources

from squeeze.data.examples import Dataset, Example

NAME = "squeeze's built-in calibration text"


def _texts() -> list[str]:
    text = resources.files(__package__).joinpath("calibration.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("# ")]


def builtin_calibration(samples: int | None = None) -> Dataset:
    """``samples`` of the even-numbered texts, spread evenly over the file (all 256 by
    default), so a small sample still spans its domains, lengths and languages."""
    lines = _texts()[::2]
    if samples is not None and samples < len(lines):
        lines = [lines[i * len(lines) // samples] for i in range(samples)]
    return Dataset(tuple(Example(line) for line in lines), NAME, "text", None, None)


def builtin_held_out() -> Dataset:
    """The odd-numbered texts: what a quantization without data is compared with the original
    on (agreement), never what it was calibrated on."""
    examples = tuple(Example(line) for line in _texts()[1::2])
    return Dataset(examples, f"{NAME} (held out)", "text", None, None)
