"""The default int8 and int4 backend (and ``--backend auto``): build every quantizer this
machine can run, time them, keep the fastest within the gates.

Which int8 path wins is a property of the CPU, not of squeeze: on AVX2-only EPYC ONNX Runtime's
dynamic int8 beat OpenVINO's static int8 by 2x, while VNNI and AMX are where OpenVINO's int8
kernels are strongest. So the default measures instead of assuming:

1. each candidate (ONNX Runtime dynamic and static, OpenVINO weight-only and static, torchao,
   and OpenVINO bf16 where the CPU computes bf16; for int4 ONNX Runtime MatMulNBits, OpenVINO
   and bitsandbytes; for bf16 PyTorch and OpenVINO) is built by its own registered
   backend from a fresh load of the input, into its own folder; static ones calibrate on the
   data's training part, or on squeeze's built-in calibration text without data; one that
   cannot run here (a device it does not serve, a layout its kernels refuse) is listed as
   skipped with the reason;
2. all of them are timed in one rotating measurement (``squeeze.measure``) at batch 1 and the
   step's ``max_length`` on the step's device, and scored on the held-out data when there is any
   (an embedder's against the input's embeddings too: its fidelity, the primary metric on
   unlabelled text);
3. the fastest candidate that passes the step's gates (the accuracy drop; an embedder's
   ``--min-fidelity`` too) is moved into the output; the summary lists every candidate with its
   latency, size and drop, and the machine's fingerprint.

The ranking is remembered (``squeeze.measure.decisions``) under the machine's speed facts and
the model's shape: the next default quantization of that shape here builds the remembered
fastest alone, and the next one only where it misses the gates. ``--backend auto`` always
measures again (and remembers the new ranking). Without data there is no gate: the fastest
candidate wins and the summary says so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.errors import Problem, SqueezeError
from squeeze.core.types import StepResult, no_progress
from squeeze.engine.registry import Backend, backends, register_backend

if TYPE_CHECKING:
    from squeeze.core.types import Evaluation, Task
    from squeeze.engine.step import StepContext
    from squeeze.measure.decisions import Decision, Timing
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.methods.quantize.target import Rule
    from squeeze.model.loaded import LoadedModel

# What auto tries per dtype: (label, backend, the fields it sets), in the order listed. int8 also
# tries, where the CPU computes bf16 (AMX, AVX512-BF16), OpenVINO's static int8 with its float
# layers in bf16 (what OpenVINO does by default there: 8% faster on BERT-base) and OpenVINO's
# bf16 IR, which keeps more of the original than int8 and wins where int8 misses the gate.
CANDIDATES: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "int8": (
        ("onnxruntime dynamic", "onnxruntime", {}),
        ("onnxruntime static", "onnxruntime", {"static": True}),
        ("openvino weight-only", "openvino", {}),
        ("openvino static", "openvino", {"static": True}),
        ("openvino static+bf16", "openvino", {"static": True, "compute": "bf16"}),
        ("torch torchao", "torch", {}),
        ("openvino bf16", "openvino", {"dtype": "bf16"}),
    ),
    "int4": (
        ("onnxruntime int4", "onnxruntime", {}),
        ("openvino int4", "openvino", {}),
        ("bitsandbytes int4", "bitsandbytes", {}),
    ),
    "bf16": (("torch bf16", "torch", {}), ("openvino bf16", "openvino", {})),
}
_TIMING = {"runs": 20, "warmup": 3, "rounds": 3}
_TIED = 0.02  # medians closer than this share of the faster one's are a tie (speed_order)


@dataclass
class Candidate:
    """One built (or skipped) candidate and what was measured of it."""

    label: str
    config: QuantizeConfig
    folder: Path | None = None
    result: StepResult | None = None
    skipped: str | None = None
    latency: Any = None
    size: dict[str, Any] | None = None
    metric: Evaluation | None = None
    drop: float | None = None
    interval: tuple[float, float] | None = None
    agreement: dict[str, Any] | None = None
    passed: bool = True

    def to_dict(self, chosen: bool, reference: Any) -> dict[str, Any]:
        if self.skipped is not None:
            skipped = {"label": self.label, "backend": self.config.backend, "skipped": self.skipped}
            if self.latency is not None:  # remembered, not built
                skipped["p50_ms"] = self.latency.p50_ms
            return skipped
        lat = self.latency
        return {
            "label": self.label,
            "backend": self.config.backend,
            "dtype": self.config.dtype,
            "static": self.config.static,
            "compute": self.config.compute,
            "p50_ms": lat.p50_ms,
            "p90_ms": lat.p90_ms,
            "stdev_ms": lat.stdev_ms,
            "speedup": reference.p50_ms / lat.p50_ms,
            "bytes_on_disk": self.size["bytes_on_disk"] if self.size else None,
            "metric": self.metric.to_dict() if self.metric is not None else None,
            "drop": self.drop,
            "drop_interval": list(self.interval) if self.interval else None,
            "agreement": self.agreement,
            "passed": self.passed,
            "chosen": chosen,
        }


def _why_not(
    config: QuantizeConfig, ctx: StepContext, asked: str, isa: list[str] | None = None
) -> str | None:
    """Why a candidate cannot be built here, checked before any work; None when it can. A
    bf16 candidate standing in for ``asked`` int8, or one computing in bf16, needs a CPU that
    computes bf16 (this one, or the target's with flags ``isa``)."""
    from squeeze.engine.registry import method_for
    from squeeze.methods.quantize.method import device_problem
    from squeeze.methods.quantize.openvino import bf16_problem

    method = method_for(config)
    problems = [p.render() for p in config.problems() + method.complete(config)]
    device = device_problem(config.chosen_backend, ctx.device)
    if device is not None:
        problems.append(device)
    elif (config.dtype == "bf16" != asked or config.compute == "bf16") and ctx.device == "cpu":
        problems.append(bf16_problem(isa) or "")
    return "; ".join(p for p in problems if p) or None


def _build(
    candidate: Candidate, loaded: LoadedModel, ctx: StepContext, agree: Any, root: Path
) -> None:
    """Run the candidate's own backend on a fresh load of the input, into its own folder."""
    from squeeze.model.checkpoint import load, write_checkpoint

    name = candidate.label.replace(" ", "-")
    out, scratch = root / "built" / name, root / "work" / name
    out.mkdir(parents=True)
    scratch.mkdir(parents=True)
    sub = replace(ctx, out=out, scratch=scratch)
    fresh = load(ctx.source, trust_remote_code=ctx.trust_remote_code, device=ctx.device)
    try:
        result, forward = candidate.config.chosen_backend.quantize(
            fresh, candidate.config, sub, agree
        )
    except SqueezeError as e:
        candidate.skipped = str(e)
        return
    except (RuntimeError, ValueError, ImportError) as e:
        # A third-party quantizer that fails on this model here is one candidate fewer, not a
        # failed step; the reason is kept (a full disk, an OSError, still stops the step).
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        candidate.skipped = f"failed here: {type(e).__name__}: {first}"
        return
    if result.model is not None:
        write_checkpoint(result.model, out)
        result.model = None
    candidate.folder, candidate.result = out, result
    candidate.agreement = agree(forward).to_dict()
    if ctx.measure:
        from squeeze.engine.gate import drop_interval, drop_points
        from squeeze.measure.evaluate import evaluate_forward

        # An embedder's candidates are scored against the input's embeddings too (fidelity,
        # the primary metric where the data has no labels, scores or pairs).
        candidate.metric = evaluate_forward(
            forward,
            ctx.data.held_out(loaded),
            loaded.task,
            progress=ctx.progress,
            reference=ctx.metric_before,
        )
        candidate.drop = drop_points(ctx.metric_before, candidate.metric)
        candidate.interval = drop_interval(ctx.metric_before, candidate.metric)


def timed_length(loaded: LoadedModel, ctx: StepContext) -> int:
    """The step's ``max_length``, or the model's position table where that is shorter."""
    from squeeze.model.arch import max_tokens

    limit = max_tokens(loaded.config, loaded.spec)
    return min(ctx.max_length, limit) if limit else ctx.max_length


def _time(built: list[Candidate], reference: Path, seq_len: int, ctx: StepContext) -> Any:
    """Every built candidate and the input itself (PyTorch, as loaded: the reference the
    speed-ups are against) in one rotating measurement, on the step's device; the input's
    latency."""
    from squeeze.measure.bench import bench_models
    from squeeze.measure.latency import BenchSettings

    settings = BenchSettings(batch_sizes=(1,), seq_len=seq_len, device=ctx.device, **_TIMING)
    paths = [str(reference), *(str(c.folder) for c in built)]
    labels = dict(zip(paths, ["input", *(c.label for c in built)], strict=True))
    results, _ = bench_models(paths, settings, progress=ctx.progress, labels=labels)
    for candidate, result in zip(built, results[1:], strict=True):
        candidate.latency = result.latencies[0]
        candidate.size = result.extra["size"]
    return results[0].latencies[0]


# Without a gate (no data, or none asked for) the fastest candidate must still say what the
# original says, on text its calibration never read: an embedder's mean cosine (issue 28's bar
# for all-MiniLM-L6-v2: ONNX Runtime's static QDQ kept 0.925 there), a classifier's top-1
# agreement on squeeze's built-in held-out text, which is not the classifier's domain, so
# near-ties flip: on the demo's sentiment classifier ONNX Runtime's dynamic int8 (the former
# default, within a point of fp32 on its test split) agrees on 96.9%, OpenVINO's static int8 on
# 97.7%, and ONNX Runtime's static QDQ, which clips (max |dlogit| 1.45), on 93.0%. A language
# model's token agreement is no such floor: 8-bit rounding flips near-tied next-token choices on
# any decoder, so there the fastest wins.
AGREEMENT_FLOOR = {"mean_cosine": 0.99, "top1_agreement": 0.95}


def agreement_floor(task: Task) -> tuple[str, float] | None:
    """The agreement a gateless choice keeps to, for a task; None: none."""
    from squeeze.core.types import Task

    key = {Task.EMBEDDING: "mean_cosine", Task.SEQUENCE_CLASSIFICATION: "top1_agreement"}.get(task)
    return (key, AGREEMENT_FLOOR[key]) if key is not None else None


def judge(
    candidate: Candidate,
    max_drop: float | None,
    gate_on: str,
    min_fidelity: float | None = None,
    floor: tuple[str, float] | None = None,
) -> bool:
    """Set and return whether a built candidate passes the gates (the drop allowance; an
    embedder's fidelity floor too), or with no gate, reaches the agreement ``floor``."""
    from squeeze.engine.gate import PASSED, fidelity_of, judged_drop, passes, verdict

    if max_drop is None and min_fidelity is None and floor is not None:
        candidate.passed = ((candidate.agreement or {}).get(floor[0]) or 0.0) >= floor[1]
        return candidate.passed
    judged = judged_drop(candidate.drop, candidate.interval, gate_on)
    kept = verdict(fidelity_of(candidate.metric), min_fidelity, at_least=True) == PASSED
    candidate.passed = passes(judged, max_drop) and (min_fidelity is None or kept)
    return candidate.passed


def choose(
    built: list[Candidate],
    max_drop: float | None,
    gate_on: str,
    min_fidelity: float | None = None,
    floor: tuple[str, float] | None = None,
) -> Candidate:
    """The fastest candidate within the gates (the drop allowance; an embedder's fidelity floor
    too); when none passes, the one that dropped least, or kept the most fidelity where only the
    floor is set (the step's gate then refuses it, so nothing is written). With no gate, the
    fastest whose agreement with the original reaches ``floor`` (key, value), else the closest."""
    from squeeze.engine.gate import fidelity_of, judged_drop

    gateless = max_drop is None and min_fidelity is None and floor is not None

    def closeness(candidate: Candidate) -> float:
        assert floor is not None
        return (candidate.agreement or {}).get(floor[0]) or 0.0

    for candidate in built:
        judge(candidate, max_drop, gate_on, min_fidelity, floor)
    passing = [c for c in built if c.passed]
    if passing:
        return speed_order(passing)[0]
    if gateless:
        return max(built, key=closeness)
    if max_drop is None and min_fidelity is not None:
        return max(built, key=lambda c: fidelity_of(c.metric) or 0.0)
    return min(built, key=lambda c: judged_drop(c.drop, c.interval, gate_on) or 0.0)


def speed_order(candidates: list[Candidate]) -> list[Candidate]:
    """Fastest first; candidates tied with the fastest left (see :func:`tied`) go in the
    order ``CANDIDATES`` lists them, ONNX Runtime's dynamic int8 first. A ranking that a second
    measurement would flip is no ranking: on an AVX2 EPYC ONNX Runtime's dynamic and OpenVINO's
    weight-only int8 of the demo model measured 38.2 and 38.0 ms (sd 0.7 and 1.0), and came out
    in either order from one run to the next, so the same model got another backend each time
    (and a search on Ray quantized differently from one here). Unmeasured candidates last."""
    left = [c for c in candidates if c.latency is not None]
    order = []
    while left:
        fastest = min(left, key=lambda c: c.latency.p50_ms)
        first = next(c for c in left if tied(c, fastest))
        order.append(first)
        left.remove(first)
    return order + [c for c in candidates if c.latency is None]


def tied(candidate: Candidate, fastest: Candidate) -> bool:
    """Whether ``candidate``'s median is within noise of ``fastest``'s: within 2% of it, or
    within either one's standard deviation over the runs, whichever is larger."""
    a, b = candidate.latency, fastest.latency
    spread = max(getattr(a, "stdev_ms", 0.0) or 0.0, getattr(b, "stdev_ms", 0.0) or 0.0)
    return a.p50_ms - b.p50_ms <= max(_TIED * b.p50_ms, spread)


def model_shape(loaded: LoadedModel) -> dict[str, Any]:
    """What decides a model's speed apart from the machine: its family, task, pooling and every
    weight's shape (a pruned model's narrower layers included), never the weights' values."""
    import hashlib
    import json

    shapes = [[name, list(p.shape)] for name, p in loaded.model.state_dict().items()]
    return {
        "model_type": getattr(loaded.config, "model_type", None),
        "task": loaded.task.value,
        "pooling": loaded.pooling.mode if loaded.pooling is not None else None,
        "weights": hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16],
    }


def _build_in_turn(
    candidates: list[Candidate],
    loaded: LoadedModel,
    ctx: StepContext,
    agree: Any,
    root: Path,
    title: str,
    enough: Callable[[Candidate], bool] = lambda candidate: False,
) -> Candidate | None:
    """Build candidates in order under one bar (their own steps run without bars, which would
    nest); stop at the first built one that is ``enough`` and return it."""
    with ctx.progress(title, len(candidates)) as bar:
        for candidate in candidates:
            bar.advance(0, info=candidate.label)
            _build(candidate, loaded, replace(ctx, progress=no_progress), agree, root)
            bar.advance(1, info=candidate.label)
            if candidate.skipped is None and enough(candidate):
                return candidate
    return None


def _measure_all(
    runnable: list[Candidate],
    loaded: LoadedModel,
    ctx: StepContext,
    agree: Any,
    root: Path,
    seq_len: int,
) -> Any:
    """Build every candidate, time them with the input; the input's latency."""
    _build_in_turn(runnable, loaded, ctx, agree, root, "Building candidates")
    built = [c for c in runnable if c.skipped is None]
    return _time(built, loaded.path, seq_len, ctx) if built else None


def _first_passing(
    order: list[Candidate],
    loaded: LoadedModel,
    ctx: StepContext,
    agree: Any,
    root: Path,
    title: str,
    rest: Callable[[Candidate], str],
) -> None:
    """Build candidates in ``order`` until one passes the gates (accuracy depends on the
    weights, so it is measured every time) and skip the rest with ``rest(winner)``."""
    floor = agreement_floor(loaded.task)

    def passes(candidate: Candidate) -> bool:
        return judge(candidate, ctx.max_accuracy_drop, ctx.gate_on, ctx.min_fidelity, floor)

    winner = _build_in_turn(order, loaded, ctx, agree, root, title, passes)
    if winner is not None:
        for later in order[order.index(winner) + 1 :]:
            later.skipped = rest(winner)


def _why_later(template: str) -> Callable[[Candidate], str]:
    """Why candidates after the winner were not built: ``template`` with the winner's label."""
    return lambda winner: "not built: " + template.format(winner.label)


def _by_decision(
    runnable: list[Candidate],
    decision: Decision,
    loaded: LoadedModel,
    ctx: StepContext,
    agree: Any,
    root: Path,
) -> Any:
    """Build the remembered fastest candidate alone (the next where it misses the gates or
    fails here); the input's remembered latency."""
    for candidate in runnable:
        candidate.latency = decision.timing(candidate.label)
    order = speed_order(runnable)
    title = "Building the remembered fastest"
    _first_passing(
        order, loaded, ctx, agree, root, title, _why_later("slower here than {} (remembered)")
    )
    return decision.reference


def _by_rule(
    runnable: list[Candidate],
    rule: Rule,
    loaded: LoadedModel,
    ctx: StepContext,
    agree: Any,
    root: Path,
    seq_len: int,
) -> Any:
    """Build in the target's rule order until one passes the gates, time what was built here
    (this is not the target: the figures say what they are); the input's latency here."""
    rank = {label: i for i, label in enumerate(rule.order)}
    for candidate in runnable:
        if candidate.label not in rank:
            candidate.skipped = f"not for the target ({rule.why})"
    order = sorted((c for c in runnable if c.label in rank), key=lambda c: rank[c.label])
    title = "Building for the target machine"
    _first_passing(
        order, loaded, ctx, agree, root, title, _why_later("the target's rule ranks {} first")
    )
    built = [c for c in order if c.skipped is None]
    return _time(built, loaded.path, seq_len, ctx) if built else None


def _rule_note(winner: Candidate, rule: Rule, target: dict[str, Any], reference: Any) -> str:
    isa = " ".join(target["isa"]) or "no AVX2"
    missed = "" if winner.passed else " (none met the gate: the closest)"
    return (
        f"chose {winner.label}{missed} for the target machine, {target['cpu']} ({isa}), by rule "
        f"({rule.why}): not timed there; on this machine it runs at {winner.latency.p50_ms:.2f} "
        f"ms p50, the input at {reference.p50_ms:.2f} ms"
    )


def _quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    from squeeze.artifact import Artifact
    from squeeze.artifact.read import MANIFEST_FILE, read_manifest
    from squeeze.core.errors import UnsupportedError
    from squeeze.measure.decisions import Decision, DecisionStore, decision_key, now, speed_facts
    from squeeze.measure.machine import fingerprint, same_isa
    from squeeze.methods.quantize.target import rule_for

    known = backends()
    candidates = [
        Candidate(label, replace(config, backend=name, **fields))
        for label, name, fields in CANDIDATES[config.dtype]
        if name in known
    ]
    root, seq_len, machine = ctx.scratch / "candidates", timed_length(loaded, ctx), fingerprint()
    # A target with this machine's instruction set is timed here like no target at all.
    target = ctx.target if ctx.target is not None and not same_isa(ctx.target, machine) else None
    for candidate in candidates:
        candidate.skipped = _why_not(candidate.config, ctx, config.dtype,
                                     target["isa"] if target else None)  # fmt: skip
    runnable = [c for c in candidates if c.skipped is None]
    remembered, rule = None, None
    if target is not None:
        rule = rule_for(target["isa"], config.dtype)
        reference = _by_rule(runnable, rule, loaded, ctx, agree, root, seq_len)
    else:
        facts = speed_facts(
            machine, model_shape(loaded), dtype=config.dtype, device=ctx.device,
            seq_len=seq_len, batch=1, candidates=[c.label for c in runnable],
        )  # fmt: skip
        key = decision_key(facts)
        store = DecisionStore(ctx.decisions) if ctx.decisions is not None else None
        # The default reuses what was measured for this shape here; --backend auto measures
        # again.
        remembered = store.get(key) if store is not None and config.backend is None else None
        if remembered is not None:
            reference = _by_decision(runnable, remembered, loaded, ctx, agree, root)
        else:
            reference = _measure_all(runnable, loaded, ctx, agree, root, seq_len)
            built = [c for c in runnable if c.skipped is None]
            if built and store is not None:
                timings = [_timing(c.label, c.latency) for c in speed_order(built)]
                store.put(key, Decision(timings, _timing("input (torch)", reference), now(),
                                        machine, facts))  # fmt: skip
    built = [c for c in runnable if c.skipped is None]
    if not built:
        reasons = "; ".join(f"{c.label}: {c.skipped}" for c in candidates)
        raise UnsupportedError(f"no {config.dtype} backend can run here ({reasons})")
    winner = choose(built, ctx.max_accuracy_drop, ctx.gate_on, ctx.min_fidelity,
                    agreement_floor(loaded.task))  # fmt: skip
    assert winner.folder is not None and winner.result is not None
    for item in winner.folder.iterdir():
        shutil.move(str(item), ctx.out / item.name)
    result = winner.result
    result.metric = winner.metric
    # The machine the choice is for, beside the artifact: bench and eval elsewhere say so.
    chosen_for = {
        **{k: (target or machine)[k] for k in ("cpu", "isa", "cores")},
        "by": f"rule: {rule.why}" if rule is not None else "measured",
    }
    result.details = {
        **result.details,
        "auto": {
            "chosen": winner.label,
            "chosen_backend": winner.config.backend,
            "chosen_static": winner.config.static,
            "chosen_dtype": winner.config.dtype,
            "chosen_compute": winner.config.compute,
            "candidates": [c.to_dict(c is winner, reference) for c in candidates],
            "reference": {
                "label": "input (torch)",
                "p50_ms": reference.p50_ms,
                "p90_ms": reference.p90_ms,
                "stdev_ms": reference.stdev_ms,
            },
            "timing": {"batch": 1, "seq_len": seq_len, "device": ctx.device, **_TIMING},
            "remembered": remembered.measured_at if remembered is not None else None,
            "gated": ctx.measure
            and (ctx.max_accuracy_drop is not None or ctx.min_fidelity is not None),
            "machine": remembered.machine if remembered is not None else machine,
            "chosen_for": chosen_for,
        },
    }
    manifest = ctx.out / MANIFEST_FILE  # an export's; ctx.out is staged, so written whole
    if manifest.is_file():
        manifest.write_text(json.dumps({**read_manifest(ctx.out), "chosen_for": chosen_for},
                                       indent=2))  # fmt: skip
    if rule is not None and target is not None:
        note = _rule_note(winner, rule, target, reference)
    else:
        note = _choice_note(winner, built, reference, seq_len, ctx, config.backend is None,
                            loaded.task)  # fmt: skip
    if remembered is not None:
        note += (
            f"; timings remembered from {remembered.measured_at} for this model shape on this "
            "machine (--backend auto measures again)"
        )
    slower = slower_note(winner, reference)
    result.notes[:0] = [note, *([slower] if slower else [])]
    return result, Artifact.of(ctx.out).open(device=ctx.device).forward


def slower_note(winner: Candidate, reference: Any) -> str | None:
    """Where even the chosen candidate is slower than the input (int4 on a CPU: bitsandbytes
    NF4 ran at 0.64x the fp32 speed of the demo model), say so; None otherwise."""
    if winner.latency.p50_ms <= reference.p50_ms:
        return None
    return (
        f"{winner.label} is slower than the input here ({winner.latency.p50_ms:.2f} ms against "
        f"{reference.p50_ms:.2f} ms): on this machine {winner.config.dtype} saves size, not time"
    )


def _timing(label: str, latency: Any) -> Timing:
    from squeeze.measure.decisions import Timing

    return Timing(label, latency.p50_ms, latency.p90_ms, latency.stdev_ms)


def _choice_note(
    winner: Candidate,
    built: list[Candidate],
    reference: Any,
    seq_len: int,
    ctx: StepContext,
    default: bool,
    task: Task,
) -> str:
    floors = [
        name
        for name, limit in (
            ("accuracy gate", ctx.max_accuracy_drop),
            ("fidelity floor", ctx.min_fidelity),
        )
        if limit is not None
    ]
    floor = agreement_floor(task) if not floors else None
    missed = " (missed the gate)" if floor is None else " (below the agreement floor)"
    others = sorted((c for c in built if c is not winner), key=lambda c: c.latency.p50_ms)
    shown = ", ".join(
        f"{c.label} {c.latency.p50_ms:.2f} ms{'' if c.passed else missed}" for c in others
    )
    if any(c.passed and c.latency.p50_ms < winner.latency.p50_ms for c in others):
        shown += " (a tie within noise goes to the candidate listed first)"
    if ctx.measure and floors:
        gate = f"fastest within the {' and '.join(floors)}"
    else:
        gate = "no accuracy gate" + ("" if ctx.measure else " without --data")
        what = {"mean_cosine": "mean cosine", "top1_agreement": "top-1 agreement"}
        gate = (
            f"fastest whose {what[floor[0]]} to the original is at least {floor[1]:g}; {gate}"
            if floor is not None
            else f"fastest; {gate}"
        )
    who = "the default backend (measured) chose" if default else "backend auto chose"
    return (
        f"{who} {winner.label}: {winner.latency.p50_ms:.2f} ms p50 at batch 1, "
        f"seq {seq_len} on {ctx.device}, {reference.p50_ms / winner.latency.p50_ms:.2f}x the "
        f"input's {reference.p50_ms:.2f} ms ({gate})" + (f"; others: {shown}" if shown else "")
    )


def _check(config: QuantizeConfig) -> list[Problem]:
    if config.static or config.compute != "f32":
        return [Problem("{backend} auto tries static and dynamic int8 and bf16 compute itself; "
                        "drop {static} and {compute}")]  # fmt: skip
    return []


register_backend(
    Backend(
        name="auto",
        dtypes=tuple(CANDIDATES),
        default_for=("int8", "int4"),
        produces="onnx, openvino or checkpoint",
        quantize=_quantize,
        help="every backend this machine runs, timed here; keeps the fastest within the gate",
        check=_check,
    )
)
