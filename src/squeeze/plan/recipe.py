"""Recipes: a model, its data, the variants to build (chains of steps), bench settings and gates.

YAML or TOML, checked whole before anything runs: every key and value against a schema that is
the type hints of the dataclass it becomes (:class:`Plan` for the top level, :class:`DataSpec`,
:class:`BenchSettings`, :class:`Gates`, :class:`TuneConfig`, a step's config), as a step's
parameters are. Every problem of the file comes in one error, each naming its place
(``bench.runs: expected an integer, got 'thirty'``). The same plan comes from the command line
(``squeeze run --model M --data D --variant "a() -> b()"``) or from ``squeeze sweep``'s grid.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from squeeze.core.config import build, check_section, literal, named_in
from squeeze.core.errors import ConfigError, Problem, SqueezeError, did_you_mean, raise_problems
from squeeze.data.encoding import DEFAULT_MAX_LENGTH
from squeeze.data.spec import DataSpec
from squeeze.engine.gates import Gates, Selection, parse_size
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import read_fingerprint
from squeeze.plan.steps import StepCall, chain_text, parse_chain
from squeeze.plan.tune.config import TuneConfig

TOP_KEYS = ("name", "model", "data", "eval_data", "calibration_data", "max_length", "device",
            "target", "variants", "tune", "bench", "gates", "select")  # fmt: skip
BENCH_KEYS = {"batch": "batch_sizes", "seq": "seq_len", "runs": "runs", "warmup": "warmup",
              "rounds": "rounds", "threads": "threads"}  # fmt: skip
# Keys read by their own schema (a section's dataclass, the step parser), not by Plan's hints.
SECTIONS = ("data", "eval_data", "calibration_data", "variants", "tune", "bench", "gates")
T = TypeVar("T")
DEFAULT_NAME = "squeeze"  # a recipe without ``name:``


@dataclass(frozen=True)
class Variant:
    name: str
    steps: tuple[StepCall, ...]

    @property
    def chain(self) -> str:
        return chain_text(self.steps)


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated."""

    model: str
    variants: tuple[Variant, ...]
    data: DataSpec | None = None
    eval_data: DataSpec | None = None
    calibration_data: DataSpec | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    device: str = "cpu"
    # The deployment machine's fingerprint (``target: FILE``, written there by ``squeeze bench
    # --fingerprint``): default quantizations choose by its rules instead of timing here.
    target: dict[str, Any] | None = None
    bench: BenchSettings = field(default_factory=lambda: BenchSettings(runs=30))
    gates: Gates = field(default_factory=Gates)
    select: Selection | None = None
    name: str = DEFAULT_NAME
    # A search (``squeeze tune``) instead of the fixed variants.
    tune: TuneConfig | None = None
    # What is wrong with the recipe's variants, reported with the data's before any work.
    problems: tuple[Problem, ...] = ()
    # The lengths the user stated ("max_length", "seq_len"): the others follow the model's
    # position table (``squeeze.plan.pipeline.fit_plan``).
    lengths_given: frozenset[str] = frozenset()
    # The top-level keys a recipe file gave (not overridden by flags): their problems name
    # fields as the recipe writes them (``label_map: sign``), the others as flags.
    from_recipe: frozenset[str] = frozenset()


def data_spec(section: Any, where: str) -> DataSpec:
    """A DataSpec from a recipe's data section: a path, or a mapping of DataSpec's fields.

    Raises:
        ConfigError: every problem of the section, each naming its place (``data.max_samples``).
    """
    if isinstance(section, str):
        section = {"source": section}
    elif not isinstance(section, Mapping):
        raise ConfigError(
            f"{where}: give a file or a mapping with 'source' and column options, not {section!r}"
        )
    typed, problems = check_section(DataSpec, section, where)
    if not problems:
        try:
            return DataSpec(**typed)
        except SqueezeError as e:
            problems = named_in(where, {}, e.problems)
    raise ConfigError(problems)


def variants_from(entries: Any, where: str = "variants") -> tuple[Variant, ...]:
    """Variants from strings (``chain``, named after it, or ``name=chain``) or mappings with
    name and steps.

    Raises:
        ConfigError: every problem of every variant, in one error.
    """
    variants, problems = collect_variants(entries, where)
    raise_problems(problems, ConfigError)
    return variants


def collect_variants(entries: Any, where: str = "variants") -> tuple[tuple[Variant, ...], list]:
    """The variants that parse, and the problems of those that do not (so a plan can report
    them together with its data's)."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: list at least one variant, like '- quantize(int8)'")
    variants = []
    problems: list[Problem] = []
    for i, entry in enumerate(entries, 1):
        try:
            variants.append(_variant(entry, f"{where}[{i}]"))
        except SqueezeError as e:
            problems += e.problems
    names = [v.name for v in variants]
    if len(set(names)) < len(names) or "baseline" in names:
        problems.append(Problem(f"{where}: variant names must be unique and not 'baseline'"))
    return tuple(variants), problems


# "name=chain": a name (no parentheses, so "quantize(dtype=int8)" is a chain) and its chain.
_NAMED = re.compile(r"^\s*(?P<name>[\w.+-]+)\s*=\s*(?P<chain>.+)$")


def _variant(entry: Any, label: str) -> Variant:
    if isinstance(entry, str):
        named = _NAMED.match(entry)
        if named:  # "int8=quantize(int8)": a short name for tables, the chain in their legend
            return Variant(named["name"], parse_chain(named["chain"], label))
        steps = parse_chain(entry, label)
        return Variant(chain_text(steps), steps)
    if not isinstance(entry, dict):
        raise ConfigError(f"{label}: a variant is a chain string or a mapping")
    extra = sorted(str(k) for k in set(entry) - {"name", "steps"})
    if extra:
        hint = did_you_mean(extra[0], ("name", "steps"))
        raise ConfigError(f"{label}: unknown key '{extra[0]}'{hint}; known keys: name, steps")
    chain = entry.get("steps")
    if isinstance(chain, list):
        chain = " -> ".join(str(s) for s in chain)
    if not isinstance(chain, str):
        raise ConfigError(f"{label}: 'steps' is a chain like 'a() -> b()' or a list")
    steps = parse_chain(chain, label)
    return Variant(str(entry.get("name") or chain_text(steps)), steps)


def _bench(section: Any, max_length: int, device: str) -> BenchSettings:
    """BenchSettings from the bench section, its keys named as a recipe writes them."""
    section = {} if section is None else section
    if isinstance(section, Mapping) and type(section.get("batch")) is int:
        section = {**section, "batch": [section["batch"]]}  # batch: 1 is batch: [1]
    typed, problems = check_section(BenchSettings, section, "bench", keys=BENCH_KEYS)
    if not problems:
        typed.setdefault("seq_len", max_length)
        try:
            return BenchSettings(device=device, **typed)
        except SqueezeError as e:
            problems = named_in("bench", BENCH_KEYS, e.problems)
    raise ConfigError(problems)


def _gates(section: Any) -> Gates:
    """Gates from the gates section; ``max_size`` may be written as a size like 50MB."""
    section = {} if section is None else section
    problems: list[Problem] = []
    if isinstance(section, Mapping) and isinstance(section.get("max_size"), str):
        section = dict(section)
        try:
            section["max_size"] = parse_size(section["max_size"])
        except ConfigError as e:
            problems += named_in("gates", {}, e.problems)
            del section["max_size"]
    typed, found = check_section(Gates, section, "gates")
    raise_problems(problems + found, ConfigError)
    return Gates(**typed)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML or TOML recipe file.

    Raises:
        ConfigError: missing, not UTF-8 text, not valid YAML/TOML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; pass a .yaml or .toml file")
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"recipe {path} is not UTF-8 text (byte {e.start}: {e.object[e.start]:#04x}); "
            f"pass a {kind} recipe saved as UTF-8"
        ) from None
    import yaml

    try:
        raw = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"recipe {path} is not valid {path.suffix or kind}: {first}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path}: the top level must be a mapping with model and variants")
    return raw


def plan_from(raw: dict[str, Any], base: Path | None = None) -> Plan:
    """Validate a recipe mapping into a plan; relative paths are relative to ``base``.

    Every key and value is checked before anything is built, each section against its
    dataclass's fields; a variant's problems come too when the rest has some (otherwise
    :func:`squeeze.plan.pipeline.check_plan` reports them with the data's).

    Raises:
        ConfigError: every problem of the recipe, each naming its place.
    """
    top, problems = check_section(
        Plan, raw, "", keys={k: k for k in TOP_KEYS}, hints={"select": str | None}, own=SECTIONS
    )

    def section(make: Callable[..., T], *args: Any) -> T | None:
        try:
            return make(*args)
        except SqueezeError as e:
            problems.extend(e.problems)
            return None

    def resolve(text: str) -> str:
        if base is None or Path(text).is_absolute():
            return text
        candidate = base / text
        return str(candidate.resolve()) if candidate.exists() else text

    data, eval_data, calibration_data = (
        section(data_spec, raw[key], key) if raw.get(key) is not None else None
        for key in ("data", "eval_data", "calibration_data")
    )
    data, eval_data, calibration_data = (
        replace(spec, source=resolve(spec.source)) if spec is not None else None
        for spec in (data, eval_data, calibration_data)
    )
    max_length = top.get("max_length", DEFAULT_MAX_LENGTH)
    if max_length < 2:
        problems.append(Problem(literal(f"max_length: must be at least 2, not {max_length}")))
        max_length = DEFAULT_MAX_LENGTH
    device = top.get("device", "cpu")
    target = section(read_fingerprint, resolve(top["target"])) if top.get("target") else None
    tuning = raw.get("tune") is not None
    tune = section(_tune, raw["tune"]) if tuning else None
    if tuning and raw.get("variants"):
        problems.append(Problem("recipe: give 'variants' or a 'tune' section, not both"))
    gates = section(_gates, raw.get("gates"))
    if tuning and gates is not None and gates.max_accuracy_drop is not None:
        problems.append(
            Problem("gates.max_accuracy_drop: a tune: search keeps the fastest variant within "
                    "its own allowance; write it as tune.max_accuracy_drop")
        )  # fmt: skip
    variants, variant_problems = (
        ((), []) if tuning else section(collect_variants, raw.get("variants")) or ((), [])
    )
    bench = section(_bench, raw.get("bench"), max_length, device)
    select = section(Selection.parse, top["select"]) if top.get("select") else None
    if problems:
        raise_problems([*problems, *variant_problems], ConfigError)
    assert bench is not None and gates is not None
    # The lengths the recipe states; the others follow the model (squeeze.plan.pipeline.fit_plan).
    lengths = {"max_length"} if "max_length" in raw else set()
    if isinstance(raw.get("bench"), Mapping) and "seq" in raw["bench"]:
        lengths.add("seq_len")
    return Plan(
        model=resolve(top["model"]),
        variants=variants,
        problems=tuple(variant_problems),
        data=data,
        eval_data=eval_data,
        calibration_data=calibration_data,
        max_length=max_length,
        device=device,
        target=target,
        bench=bench,
        gates=gates,
        select=select,
        name=top.get("name") or "squeeze",
        tune=tune,
        lengths_given=frozenset(lengths),
        from_recipe=frozenset(key for key in raw if key in TOP_KEYS),
    )


def _tune(section: Any) -> TuneConfig:
    """The ``tune:`` section: TuneConfig's fields, e.g. {max_accuracy_drop: 1.0, budget: 20m}."""
    if not isinstance(section, Mapping):
        raise ConfigError("tune: a mapping like {max_accuracy_drop: 1.0, budget: 20m}")
    try:
        return build(TuneConfig, section)
    except SqueezeError as e:
        raise ConfigError(named_in("tune", {}, e.problems)) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a recipe file."""
    return plan_from(read_recipe(path), Path(path).resolve().parent)
