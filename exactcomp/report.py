"""The JSON report of a compression run (the terminal summary built from it: :mod:`exactcomp.cli.report`).

Report schema ``exactcomp.report/1`` (all counts are integers, times in seconds)::

    schema        "exactcomp.report/1"
    versions      {exactcomp, python, numpy, scipy, onnx, onnxruntime, highspy}
    model, domain, output       paths (output is null when nothing was written; domain: a list when several)
    domain_info                 {sources, sha256 (of the files), dimensions, boxes (in the union),
                                 fixed_inputs}
    model_sha256, domain_sha256 the model's files and the box (float64), for --resume
    resumed_from  the report a --resume run started from, or null
    input         {name, shape, dtype}
    layers        one entry per hidden layer of the original model:
                  {layer, neurons, stably_active, stably_inactive, unstable, unknown, kept,
                   parameters_before, parameters_after (of the affine map into this layer; a
                   merged layer's parameters count for the layer it was merged into),
                   decided_by: {method: count}, unknown_reasons: {reason: count},
                   neuron_status: [status per neuron], neuron_method: [method per neuron],
                  lower, upper: [pre-activation bounds per neuron] (null: none known),
                   node: the ONNX Relu node that ends the layer (its name, else its output; null if
                   not imported from ONNX), kind: "dense" | "conv" | "maxpool" (comparison neurons of a max pooling: also "level", "levels"); for a convolution also shape [C, H, W] of its output and
                   channels: {count, kept, per_channel: {status: [count per channel]}} (neuron index
                   = (channel · H + y) · W + x)}
                  status ∈ stably_active | stably_inactive | unstable | unknown,
                  method ∈ interval | symbolic | lp | alpha | bab | milp (stable: the prover) | witness
                  (unstable) | near_zero | time_limit | work_limit | interrupted | solver_error | certificate_rejected
                  (unknown: why) |
                  null (unknown, not attempted: strategy "bounds");
                  kept = neurons of this layer present in the compressed model
    totals        the same counts summed over layers
    widths        {before: [...], after: [...]}  layer widths including the output layer
    parameters    {before, after, removed_fraction, output_layer_before, output_layer_after, original_model
                   (float entries the original ONNX file stores outside the head; null if unknown)}
    analysis      {strategy, solver, margin, time_limit, work_limit (the deterministic budget in units of work,
                   exactcomp.provers.budget; null: a time budget), work (units of work done, either way: the
                   work_* stats give them per kind), threads, jobs, formulation, provers (the provers that ran, in order), device,
                   proof_seconds (time of the proof phases, what time_limit bounds),
                   stats: {lp_solves, milp_rounds, per_neuron_milps, bab_subdomains, bab_proofs,
                   certificates_checked, ...}}
    times         {import, bounds, witnesses, lp, milp, per_neuron, rewrite, export, verify, total}
    verification  exactcomp.verify.compare.VerificationResult as JSON, or null when skipped
    witnesses     {count (cited by the analysis), stored and dropped (the file keeps at most
                   exactcomp.pipeline.MAX_WITNESS_BYTES of them), file, bytes} (file and bytes null when not written)
    valid_for     {network_sha256, margin, boxes: [{lower, upper}]}: what the analysis holds for
                  (exactcomp.validity; --resume checks it)
    interrupted   true when Ctrl-C or SIGTERM cut the analysis short (the result is still sound)
    interrupted_by  "Ctrl-C (SIGINT)" | "SIGTERM" | null
    partial       true when undecided neurons were kept because of an interrupt
"""

from __future__ import annotations

import platform
from importlib import metadata

from exactcomp.options import DEFAULT_JOBS
from exactcomp.results import Status

SCHEMA = "exactcomp.report/1"
_COUNT_KEYS = ("stably_active", "stably_inactive", "unstable", "unknown", "not_needed")
_COUNTED = (Status.ACTIVE, Status.INACTIVE, Status.UNSTABLE, Status.UNKNOWN, Status.NOT_NEEDED)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("exactcomp", "numpy", "scipy", "onnx", "onnxruntime", "highspy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _params_by_layer(net) -> dict[int, int]:
    out: dict[int, int] = {}
    for layer in net.layers:
        out[layer.layer_id] = out.get(layer.layer_id, 0) + layer.parameter_count
    return out


def _layer_kind(result, la) -> dict:
    """``node`` (the ONNX Relu ending the layer), ``kind`` (dense, conv, maxpool), for a convolution its output
    shape and per-channel status counts, for the comparison neurons of a max pooling their level."""
    from exactcomp.ir.maxpool import PoolLevel
    from exactcomp.ir.pool import conv_of

    layer = next(x for x in result.original.layers if x.layer_id == la.layer_id)
    node = result.original.metadata.get("relu_nodes", {}).get(la.layer_id)
    if isinstance(layer, PoolLevel):   # comparisons max(u, v) = v + relu(u - v) of a max pooling
        return {"node": node, "kind": "maxpool", "level": layer.level, "levels": layer.pool.pool.depth,
                "shape": list(layer.pool.pool.out_shape)}
    layer = conv_of(layer)
    if layer is None:
        return {"node": node, "kind": "dense"}
    kept = sum(conv_of(x).channels for x in result.compressed.hidden if x.layer_id == la.layer_id and conv_of(x))
    status = la.status.reshape(layer.channels, layer.positions)
    per_channel = {Status(s).label: (status == s).sum(axis=1).tolist()
                   for s in _COUNTED}
    return {"node": node, "kind": "conv", "shape": list(layer.out_shape),
            "channels": {"count": layer.channels, "kept": kept, "per_channel": per_channel}}


def layer_entries(result) -> list[dict]:
    kept = {}
    for layer in result.compressed.hidden:
        kept[layer.layer_id] = kept.get(layer.layer_id, 0) + layer.width
    before, after = _params_by_layer(result.original), _params_by_layer(result.compressed)
    entries = []
    for la in result.analysis.layers:
        entry = {"layer": la.layer_id, "neurons": la.neurons}
        entry.update({s.label: la.count(s) for s in _COUNTED})
        entry["kept"] = kept.get(la.layer_id, 0)
        entry["parameters_before"] = before.get(la.layer_id, 0)
        entry["parameters_after"] = after.get(la.layer_id, 0)
        entry["decided_by"] = la.methods()
        entry["unknown_reasons"] = la.unknown_reasons()
        entry["neuron_status"] = [Status(int(s)).label for s in la.status]
        entry["neuron_method"] = [m if m else None for m in la.method.tolist()]
        entry["lower"], entry["upper"] = la.lower.tolist(), la.upper.tolist()
        entry.update(_layer_kind(result, la))
        entries.append(entry)
    return entries


def _domain_field(domain):
    """The domain file as given (a list when several were given)."""
    if isinstance(domain, (list, tuple)):
        return str(domain[0]) if len(domain) == 1 else [str(d) for d in domain]
    return str(domain) if domain else None


def build_report(result, *, model=None, domain=None, output=None, verification=None, witnesses_file=None,
                 witnesses_bytes=None, interrupted_by=None, resumed_from=None, domain_info=None,
                 witnesses_stored=0, witnesses_dropped=0) -> dict:
    from exactcomp.io.resume import domain_sha256, model_sha256

    layers = layer_entries(result)
    totals = {"neurons": sum(e["neurons"] for e in layers)}
    for key in (*_COUNT_KEYS, "kept"):
        totals[key] = sum(e[key] for e in layers)
    before, after = result.original.parameter_count, result.compressed.parameter_count
    order = ("import", "resume", "bounds", "witnesses", "input-split", "lp", "network-milp", "milp", "bab", "portfolio", "distributed",
             "per_neuron", "recheck",
             "rewrite", "export", "verify")
    times = {k: round(float(result.times[k]), 6) for k in sorted(result.times, key=lambda k: (order + (k,)).index(k))}
    times["total"] = round(sum(times.values()), 6)
    net = result.original
    return {
        "schema": SCHEMA,
        "versions": versions(),
        "model": str(model) if model else None,
        "model_sha256": model_sha256(model) if model else None,
        "domain_sha256": domain_sha256(result.analysis.box),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "domain": _domain_field(domain),
        "domain_info": domain_info if domain_info is not None else _describe(getattr(result, "domain", None)),
        "output": str(output) if output else None,
        "input": {"name": net.input.name, "shape": list(net.input.shape), "dtype": net.input.dtype},
        "layers": layers,
        "totals": totals,
        "widths": {"before": net.widths, "after": result.compressed.widths},
        "parameters": {"before": before, "after": after, "removed_fraction": round(1 - after / before, 6) if before else 0.0,
                       "output_layer_before": _params_by_layer(net).get(net.layers[-1].layer_id, 0),
                       "output_layer_after": _params_by_layer(result.compressed).get(net.layers[-1].layer_id, 0),
                       "original_model": net.metadata.get("stored_parameters")},
        "analysis": _analysis_entry(result.analysis),
        "times": times,
        "verification": verification.to_json() if verification is not None else None,
        "witnesses": {"count": int(len(result.analysis.witnesses)), "stored": int(witnesses_stored),
                      "dropped": int(witnesses_dropped), "file": str(witnesses_file) if witnesses_file else None,
                      "bytes": int(witnesses_bytes) if witnesses_file and witnesses_bytes is not None else None},
        "valid_for": result.analysis.valid_for.to_json() if result.analysis.valid_for is not None else None,
        "interrupted": bool(result.analysis.interrupted),
        "interrupted_by": interrupted_by if result.analysis.interrupted else None,
        "partial": bool(result.analysis.interrupted),
    }


def _describe(domain) -> dict | None:
    return domain.describe() if domain is not None else None


def _analysis_entry(analysis) -> dict:
    o = analysis.options
    solver = None if o is None else (o.solver if isinstance(o.solver, str) else getattr(o.solver, "name", "custom"))
    return {"strategy": None if o is None else o.strategy, "solver": solver,
            "margin": None if o is None else o.margin, "time_limit": None if o is None else o.time_limit,
            "work_limit": None if o is None else getattr(o, "work_limit", None),
            "work": analysis.stats.get("work"),
            "threads": None if o is None else o.threads,
            "jobs": None if o is None else (o.jobs or DEFAULT_JOBS),
            "formulation": None if o is None else (o.formulation if isinstance(o.formulation, str)
                                                   else getattr(o.formulation, "name", "custom")),
            "provers": list(analysis.schedule) if analysis.schedule else _schedule(o), "device": None if o is None else getattr(o, "device", "cpu"),
            "complete": None if o is None else _complete(getattr(o, "payoff", None)),
            "min_gain": None if o is None else getattr(getattr(o, "payoff", None), "min_gain", None),
            "gain_left": analysis.gain_left,
            "sizes": [list(x) for x in analysis.sizes],
            "proof_seconds": round(analysis.proof_seconds, 6), "stats": dict(analysis.stats)}


def _complete(payoff) -> bool:
    """Whether the analysis tried every neuron (no payoff, or one that skips nothing)."""
    return payoff is None or not getattr(payoff, "skip_unneeded", True)


def _schedule(options) -> list | None:
    """The provers an analysis without a recorded schedule would run (names; a user's prover object by its
    ``name``): the per-neuron baseline, or an analysis made before the schedule was recorded."""
    from exactcomp.provers import SCHEDULES

    if options is None:
        return None
    names = options.provers or SCHEDULES.get(options.strategy)
    if names is None:
        return None
    names = [n if isinstance(n, str) else getattr(n, "name", "custom") for n in names]
    return [n for n in names if n != "lp" or options.lp_tightening]
