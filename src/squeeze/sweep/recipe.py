"""Recipes: a model, its data, the variants to build (chains of steps), bench settings and gates.

YAML or TOML, checked whole before anything runs: unknown keys, unknown steps and bad
parameters are errors that name the place and the fix. The same plan comes from the command line
(``squeeze run --model M --data D --variant "a() -> b()"``) or from ``squeeze sweep``'s grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from squeeze.bench.latency import BenchSettings
from squeeze.config import build
from squeeze.dataspec import DataSpec
from squeeze.errors import ConfigError, Problem, SqueezeError, raise_problems
from squeeze.gate import GATE_MODES
from squeeze.sweep.gates import Gates, Selection, parse_size
from squeeze.sweep.steps import StepCall, chain_text, parse_chain
from squeeze.tune.config import TuneConfig

TOP_KEYS = ("name", "model", "data", "eval_data", "calibration_data", "max_length", "device",
            "variants", "tune", "bench", "gates", "select")  # fmt: skip
BENCH_KEYS = {"batch": "batch_sizes", "seq": "seq_len", "runs": "runs", "warmup": "warmup",
              "rounds": "rounds", "threads": "threads"}  # fmt: skip
GATE_KEYS = ("max_accuracy_drop", "gate_on", "min_speedup", "max_size")
_DATA_FIELDS = tuple(f.name for f in fields(DataSpec))


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
    max_length: int = 128
    device: str = "cpu"
    bench: BenchSettings = field(default_factory=lambda: BenchSettings(runs=30))
    gates: Gates = field(default_factory=Gates)
    select: Selection | None = None
    name: str = "squeeze"
    # A search (``squeeze tune``) instead of the fixed variants.
    tune: TuneConfig | None = None
    # What is wrong with the recipe's variants, reported with the data's before any work.
    problems: tuple[Problem, ...] = ()


def _unknown(keys: Any, known: Any, where: str) -> None:
    extra = sorted(set(keys) - set(known))
    if extra:
        raise ConfigError(f"{where}: unknown key '{extra[0]}'; known keys: {', '.join(known)}")


def data_spec(section: Any, where: str) -> DataSpec:
    """A DataSpec from a recipe's data section: a path, or a mapping of DataSpec's fields."""
    if isinstance(section, str):
        return DataSpec(section)
    if not isinstance(section, dict) or "source" not in section:
        raise ConfigError(f"{where}: give a file or a mapping with 'source' and column options")
    _unknown(section, _DATA_FIELDS, where)
    values = dict(section)
    if "split_ratios" in values:
        values["split_ratios"] = tuple(values["split_ratios"])
    try:
        return DataSpec(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def variants_from(entries: Any, where: str = "variants") -> tuple[Variant, ...]:
    """Variants from strings (named after their chain) or mappings with name and steps.

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
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None or "baseline" in names:
        problems.append(Problem(f"{where}: variant names must be unique and not 'baseline'"))
    return tuple(variants), problems


def _variant(entry: Any, label: str) -> Variant:
    if isinstance(entry, str):
        steps = parse_chain(entry, label)
        return Variant(chain_text(steps), steps)
    if not isinstance(entry, dict):
        raise ConfigError(f"{label}: a variant is a chain string or a mapping")
    _unknown(entry, ("name", "steps"), label)
    chain = entry.get("steps")
    if isinstance(chain, list):
        chain = " -> ".join(str(s) for s in chain)
    if not isinstance(chain, str):
        raise ConfigError(f"{label}: 'steps' is a chain like 'a() -> b()' or a list")
    steps = parse_chain(chain, label)
    return Variant(str(entry.get("name") or chain_text(steps)), steps)


def _bench(section: Any, max_length: int, device: str) -> BenchSettings:
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError("bench: a mapping like {batch: 1, seq: 128, runs: 30}")
    _unknown(section, BENCH_KEYS, "bench")
    values = {BENCH_KEYS[k]: v for k, v in section.items()}
    batch = values.get("batch_sizes", 1)
    values["batch_sizes"] = tuple(batch) if isinstance(batch, list) else (int(batch),)
    values.setdefault("seq_len", max_length)
    values.setdefault("runs", 30)
    return BenchSettings(device=device, **values)


def _gates(section: Any) -> Gates:
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError("gates: a mapping like {max_accuracy_drop: 1.0, min_speedup: 2}")
    _unknown(section, GATE_KEYS, "gates")
    size = section.get("max_size")
    gate_on = section.get("gate_on", "point")
    if gate_on not in GATE_MODES:
        raise ConfigError(f"gates: gate_on takes {' or '.join(GATE_MODES)}, not '{gate_on}'")
    return Gates(
        max_accuracy_drop=section.get("max_accuracy_drop"),
        gate_on=gate_on,
        min_speedup=section.get("min_speedup"),
        max_size=parse_size(str(size)) if size is not None else None,
    )


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML or TOML recipe file.

    Raises:
        ConfigError: missing, unreadable, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; pass a .yaml or .toml file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"recipe {path} is not valid {path.suffix or 'YAML'}: {first}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path}: the top level must be a mapping with model and variants")
    return raw


def plan_from(raw: dict[str, Any], base: Path | None = None) -> Plan:
    """Validate a recipe mapping into a plan; relative paths are relative to ``base``.

    Raises:
        ConfigError: what is wrong and where.
    """
    _unknown(raw, TOP_KEYS, "recipe")
    if "model" not in raw:
        raise ConfigError("recipe: 'model' is required (a checkpoint folder or hub id)")

    def resolve(text: str) -> str:
        if base is None or Path(text).is_absolute():
            return text
        candidate = base / text
        return str(candidate.resolve()) if candidate.exists() else text

    data = data_spec(raw["data"], "data") if raw.get("data") is not None else None
    if data is not None:
        data = replace(data, source=resolve(data.source))
    eval_data, calibration_data = (
        data_spec(raw[key], key) if raw.get(key) else None
        for key in ("eval_data", "calibration_data")
    )
    eval_data, calibration_data = (
        replace(spec, source=resolve(spec.source)) if spec is not None else None
        for spec in (eval_data, calibration_data)
    )
    max_length = int(raw.get("max_length", 128))
    device = str(raw.get("device", "cpu"))
    tune = _tune(raw.get("tune"))
    if tune is not None and raw.get("variants"):
        raise ConfigError("recipe: give 'variants' or a 'tune' section, not both")
    variants, problems = ((), []) if tune is not None else collect_variants(raw.get("variants"))
    return Plan(
        model=resolve(str(raw["model"])),
        variants=variants,
        problems=tuple(problems),
        data=data,
        eval_data=eval_data,
        calibration_data=calibration_data,
        max_length=max_length,
        device=device,
        bench=_bench(raw.get("bench"), max_length, device),
        gates=_gates(raw.get("gates")),
        select=Selection.parse(str(raw["select"])) if raw.get("select") else None,
        name=str(raw.get("name") or "squeeze"),
        tune=tune,
    )


def _tune(section: Any) -> TuneConfig | None:
    """The ``tune:`` section: TuneConfig's fields, e.g. {max_accuracy_drop: 1.0, budget: 20m}."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError("tune: a mapping like {max_accuracy_drop: 1.0, budget: 20m}")
    try:
        return build(TuneConfig, section)
    except SqueezeError as e:
        raise ConfigError([Problem(f"tune: {p.text}", p.error) for p in e.problems]) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a recipe file."""
    return plan_from(read_recipe(path), Path(path).resolve().parent)
