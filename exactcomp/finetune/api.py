"""``exactcomp.stabilize``: the Python API of ``exactcomp stabilize`` (the CLI calls it too).

    import exactcomp
    result = exactcomp.stabilize("model.onnx", "x.npy", "y.npy", domain="box.json", val_data="vx.npy",
                                 val_labels="vy.npy", max_accuracy_drop=0.5)
    result.save("stable.onnx")                     # the same graph with new weights
    small = result.compress()                      # exact compression of the stabilized model
    small.save("small.onnx")

Inputs are checked before any training, each failure one :class:`~exactcomp.errors.ExactcompError` line:
data of the wrong shape or dtype, NaN/inf, no rows, rows outside the domain (refused, not clipped: the
budget is about the domain; widen it or drop the rows), labels of another length, not integers or out of
range, validation labels without validation data, a model without ReLU units, an op that cannot be trained.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from exactcomp.errors import DomainError, ExactcompError, ModelError


@dataclass(frozen=True)
class StabilizeResult:
    """``model``: the stabilized ONNX model (the original's graph with new weights), None when no round met the
    budget; ``record``: :class:`~exactcomp.finetune.train.StabilizeRecord`; :meth:`report` its JSON form."""

    original: object
    model: object
    record: object
    domain: object
    options: object
    source: Path | None = None
    validation_given: bool = False

    @property
    def network(self):
        """The stabilized model in exactcomp's IR (what :meth:`compress` compresses)."""
        from exactcomp.io.onnx_import import import_model

        if self.model is None:
            raise ExactcompError("no round met the budget: there is no stabilized model")
        return import_model(self.model, source="stabilized model")

    @property
    def original_parameters(self) -> int:
        """Parameters of the original model in exactcomp's IR (before any compression)."""
        from exactcomp.io.onnx_import import import_model

        return import_model(self.original, source="original model").parameter_count

    @property
    def chosen(self) -> dict | None:
        """The record's entry of the round written (None: none met the budget)."""
        return None if self.record.chosen is None else self.record.rounds[self.record.chosen - 1]

    def save(self, path: str | Path) -> Path:
        """Write the stabilized model to ``path`` (whole or not at all; never over the original's file)."""
        from exactcomp.pipeline import plan_outputs

        if self.model is None:
            raise ExactcompError("no round met the budget: nothing to save")
        path = Path(path)
        data = self.model.SerializeToString()
        outputs = plan_outputs(path, None, None, {"input model": self.source})
        with outputs:
            outputs.stage("-o/--output", lambda fh: fh.write(data))
            outputs.commit()
        return path

    def compress(self, **kwargs):
        """``exactcomp.compress`` of the stabilized model over the same domain (keyword arguments: its options)."""
        from exactcomp.api import compress

        return compress(self.network, self.domain, **kwargs)

    def report(self, **extra) -> dict:
        """The JSON record (schema ``exactcomp.stabilize/1``): the metric and per-class recall before and after
        on the validation rows, units stable by interval bounds before and after, every round, the time."""
        from exactcomp.finetune.metrics import worst_class

        r, o = self.record, self.options
        before = {"value": r.before, "recall": r.recall_before, "stable": r.stable_before,
                  "worst_class": dict(zip(("class", "recall"), worst_class(r.recall_before)))}
        chosen = self.chosen
        after = None if chosen is None else {"value": chosen[r.metric], "change_se": chosen["change_se"],
                                             "recall": chosen["recall"],
                                             "stable": chosen["stable"], "worst_class": chosen["worst_class"]}
        budget = ({"max_accuracy_drop": o.max_accuracy_drop} if r.metric == "accuracy" else
                  {"min_agreement": o.min_agreement})
        return {"schema": "exactcomp.stabilize/1", "model": None if self.source is None else str(self.source),
                "metric": r.metric, "budget": budget,
                "validation": {"source": "given" if self.validation_given else f"{o.val_fraction:g} of the data",
                               "seed": o.seed},
                "before": before, "after": after, "chosen": r.chosen,
                "fraction": None if chosen is None else chosen["fraction"],
                "epochs": sum(e["epochs"] for e in r.rounds), "rounds": r.rounds, "seconds": r.seconds,
                "interrupted": r.interrupted, "stopped_by": r.stopped_by, "warnings": r.warnings,
                "options": {"score": o.score, "allocation": o.allocation, "epochs": o.epochs, "time_limit": o.time_limit, "device": o.device},
                **extra}


def stabilize(model, data, labels=None, domain=None, *, val_data=None, val_labels=None, options=None,
              progress=None, on_round=None, **option_fields) -> StabilizeResult:
    """Fine-tune ``model`` (an ONNX path or ModelProto; first output: the logits) so that more of its units are
    provably dead over ``domain`` (anything :func:`exactcomp.load_domain` takes: box/VNN-LIB files, dicts,
    boxes, a list of them for a union), within the budget on validation data, as
    :mod:`exactcomp.finetune.train` says. ``data``/``labels``/``val_data``/``val_labels``: arrays or ``.npy``
    paths; without labels the budget is top-1 agreement with the original. Keyword arguments set fields of
    :class:`~exactcomp.finetune.train.StabilizeOptions` (``max_accuracy_drop``, ``min_agreement``, ``epochs``,
    ``time_limit``, ``device``, ...). Returns a :class:`StabilizeResult`."""
    import onnx

    from exactcomp.api import load_domain
    from exactcomp.finetune.graph import TorchGraph
    from exactcomp.finetune.train import StabilizeOptions, stabilize_graph
    from exactcomp.finetune.graph import with_weights
    from exactcomp.io.onnx_import import import_model

    if domain is None:
        raise DomainError("stabilize needs a domain (box or VNN-LIB file, dict, or a list of them)")
    unknown = set(option_fields) - {f.name for f in fields(StabilizeOptions)}
    if unknown:
        raise ExactcompError(f"stabilize: unknown option {sorted(unknown)[0]!r}")
    options = options or StabilizeOptions(**option_fields)
    source = None
    if not isinstance(model, onnx.ModelProto):
        source = Path(model)
        net = import_model(source)   # the model exactcomp reads (and will compress), with its one-line errors
        model = _onnx(source)
    else:
        net = import_model(model)
    if not TorchGraph(model).relu_names:   # an op that cannot be trained: one line naming the node
        raise ModelError(f"{source or 'model'}: no Relu node, nothing to stabilize")
    whole = load_domain(net, *domain) if isinstance(domain, (list, tuple)) else load_domain(net, domain)
    X, y = checked_data(net, whole, data, labels, "data")
    validation = None
    if val_data is not None:
        validation = checked_data(net, whole, val_data, val_labels, "validation data")
        if (validation[1] is None) != (y is None):
            raise ExactcompError("labels and validation labels go together (both, or neither)")
    elif val_labels is not None:
        raise ExactcompError("validation labels need validation data")
    shape = (len(whole.parts), *net.input.shape)
    lower = np.stack([p.lower for p in whole.parts]).reshape(shape)
    upper = np.stack([p.upper for p in whole.parts]).reshape(shape)
    values, record = stabilize_graph(model, lower, upper, X.reshape(-1, *net.input.shape), y, options, progress,
                                     None if validation is None else
                                     (validation[0].reshape(-1, *net.input.shape), validation[1]), on_round)
    new = None if values is None else with_weights(model, values)
    return StabilizeResult(model, new, record, whole, options, source, validation is not None)


def _onnx(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:   # noqa: BLE001 - import_model read it already; anything else is the file's fault
        raise ModelError(f"{path}: {str(exc).splitlines()[0][:120]}") from None


def checked_data(net, whole, data, labels, what: str) -> tuple:
    """``(rows, labels or None)``: float64 rows inside the domain and int64 labels in range, or a one-line error."""
    from exactcomp.domain import as_samples, read_npy

    name = str(data) if isinstance(data, (str, Path)) else what
    rows = as_samples(read_npy(data) if isinstance(data, (str, Path)) else data, net.input.shape, name)
    if not len(rows):
        raise DomainError(f"{name}: {what} holds no rows")
    outside = int((~whole.contains(rows)).sum())
    if outside:
        raise DomainError(f"{name}: {outside} of {len(rows)} rows of {what} lie outside the domain; keep the rows "
                          "inside it (the budget is about the domain) or widen the domain")
    if labels is None:
        return rows, None
    lname = str(labels) if isinstance(labels, (str, Path)) else f"labels of the {what}"
    y = read_npy(labels) if isinstance(labels, (str, Path)) else np.asarray(labels)
    classes = net.layers[-1].width
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DomainError(f"{lname}: labels must be a 1-D integer array, got {y.dtype} {list(y.shape)}")
    if len(y) != len(rows):
        raise DomainError(f"{lname}: {len(y)} labels for {len(rows)} rows of {name}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise DomainError(f"{lname}: labels must lie in 0..{classes - 1} (the model has {classes} outputs)")
    return rows, y.astype(np.int64)
