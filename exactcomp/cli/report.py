"""The terminal summary of a compression run, built from its JSON report (:mod:`exactcomp.report`)."""

from __future__ import annotations

def summary_table(report: dict):
    """A rich Table: per layer neurons before/after and the stability counts."""
    from rich.table import Table

    table = Table(title="exactcomp: stability and compression per layer", show_lines=False)
    spared = report["totals"].get("not_needed", 0) > 0      # the column shows only when some neuron is not needed
    for col in ("layer", "neurons", "active", "inactive", "unstable", "unknown", *(("not needed",) if spared else ()),
                "kept", "params before", "params after", "decided by"):
        table.add_column(col, justify="right" if col not in ("decided by",) else "left")

    def counts(e):
        return [str(e["stably_active"]), str(e["stably_inactive"]), str(e["unstable"]), str(e["unknown"]),
                *((str(e.get("not_needed", 0)),) if spared else ()), str(e["kept"])]

    for e in report["layers"]:
        table.add_row(str(e["layer"]), str(e["neurons"]), *counts(e), str(e["parameters_before"]),
                      str(e["parameters_after"]), _decided_text(e))
    p = report["parameters"]
    table.add_row("output", "", *[""] * (6 if spared else 5), str(p["output_layer_before"]),
                  str(p["output_layer_after"]), "")
    t = report["totals"]
    table.add_row("total", str(t["neurons"]), *counts(t), str(p["before"]), str(p["after"]), "", style="bold")
    return table


def _decided_text(entry: dict) -> str:
    text = ", ".join(f"{k} {v}" for k, v in sorted(entry["decided_by"].items()))
    reasons = entry.get("unknown_reasons") or {}
    if reasons:
        text += "; unknown: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    return text


def summary_lines(report: dict) -> list[str]:
    p = report["parameters"]
    lines = [
        f"widths      {report['widths']['before']} -> {report['widths']['after']}",
        f"parameters  {p['before']} -> {p['after']} ({100 * p['removed_fraction']:.1f}% removed)",
        "times       " + ", ".join(f"{k} {v:.2f}s" for k, v in report["times"].items()),
    ]
    a = report.get("analysis") or {}
    if a.get("work_limit") is not None:
        lines.insert(3, f"proofs      {a.get('work') or 0:,} of {a['work_limit']:,} units of work (--work-limit), "
                        f"{a.get('proof_seconds') or 0:.1f}s")
    elif a.get("time_limit") is not None and a.get("proof_seconds") is not None:
        lines.insert(3, f"proofs      {a['proof_seconds']:.1f}s of the {a['time_limit']:g}s budget (--time-limit), "
                        f"{a.get('work') or 0:,} units of work")
    stored = p.get("original_model")
    if stored and p["after"] > stored:
        lines.insert(2, f"note        the compressed trunk stores {p['after']} parameters, more than the {stored} of the "
                        "original model: affine ops it folds into dense matrices (pooling, ops before a padded convolution, "
                        "scaled or sliced shortcuts) are larger written out")
    spared = report["totals"].get("not_needed", 0)
    if spared:
        lines.insert(2, f"not needed  {spared} undecided neuron{'s' if spared != 1 else ''} whose decision could not change "
                        "the written model (kept; --complete decides them too)")
    left = _low_gain_line(report)
    if left:
        lines.insert(2, left)
    convs = [e for e in report["layers"] if e.get("kind") == "conv"]
    if convs:
        lines.insert(1, "channels    " + ", ".join(f"layer {e['layer']} {e['channels']['count']} -> {e['channels']['kept']}"
                                                  for e in convs))
    pools = [e for e in report["layers"] if e.get("kind") == "maxpool"]
    if pools:
        count = sum(e["neurons"] for e in pools)
        stable = sum(e["stably_active"] + e["stably_inactive"] for e in pools)
        open_ = sum(e["unknown"] for e in pools)
        lines.insert(1, f"max pool    {count} comparison neurons (max(u, v) = v + relu(u - v)): {stable} stable "
                        f"(winner fixed), {open_} left undecided (not needed to compress: provers skip them)")
    v = report.get("verification")
    if v:
        verdict = "passed" if v["passed"] else "FAILED"
        lines.append(f"verify      {verdict} on {v['points']} points (max abs error {v['max_abs_error']:.2e}, "
                     f"max rel error {v['max_rel_error']:.2e})")
    if report.get("output"):
        lines.append(f"wrote       {report['output']}")
    w = report.get("witnesses") or {}
    if w.get("file"):
        kept = w.get("stored", w["count"])
        dropped = (f" (of {w['count']}: {w['dropped']} dropped to keep the file small, those cited by the fewest "
                   "neurons)") if w.get("dropped") else ""
        lines.append(f"witnesses   {kept} points in {w['file']} ({_size(w['bytes'])}){dropped}; 'verify' uses them")
    if report.get("interrupted"):
        lines.append(f"interrupted the analysis was cut short by {report.get('interrupted_by') or 'an interrupt'}; "
                     "undecided neurons were kept")
    return lines


def _size(count) -> str:
    if count is None:
        return "size unknown"
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000


def _low_gain_line(report: dict) -> str | None:
    """The summary line of a run that stopped at ``--min-gain`` (neurons with unknown reason ``low_gain``)."""
    a = report.get("analysis") or {}
    stopped = sum((e.get("unknown_reasons") or {}).get("low_gain", 0) for e in report["layers"])
    if not stopped or a.get("gain_left") is None:
        return None
    before = report["parameters"]["before"]
    return (f"low gain    stopped with {stopped} neuron{'s' if stopped != 1 else ''} undecided: deciding them could remove "
            f"at most {a['gain_left']} more parameters ({100 * a['gain_left'] / max(before, 1):.2f}%), below --min-gain "
            f"{100 * a['min_gain']:g}%")
