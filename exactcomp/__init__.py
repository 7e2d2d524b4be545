"""exactcomp: exact compression of ReLU networks by proving neuron stability over an input box.

Python API (mirrors the CLI)::

    import exactcomp
    net = exactcomp.load("model.onnx")
    result = exactcomp.compress(net, "box.json")      # analysis + rewriting
    result.save("small.onnx")
    check = exactcomp.verify("model.onnx", "small.onnx", "box.json")
    stable = exactcomp.stabilize("model.onnx", "x.npy", "y.npy", domain="box.json")   # fine-tune, then compress

The names below are imported on first use (PEP 562), so that ``import exactcomp.cli`` is quick and
the command line can take charge of Ctrl-C and SIGTERM before numpy, scipy and onnx load; so are the
subpackages (``exactcomp.solvers.get_solver``, ``exactcomp.formulations.bigm.build_bigm``). ``exactcomp.verify``
is the API function, so the verification tolerances are ``exactcomp.TOLERANCES`` (or
``from exactcomp.verify.compare import TOLERANCES``).
"""

import sys
import types
from importlib import import_module
from importlib.util import find_spec

from exactcomp.version import __version__

_EXPORTS = {
    "Analysis": "analysis", "AnalysisOptions": "analysis", "LayerAnalysis": "analysis", "Status": "analysis",
    "CompressionResult": "api", "analyze": "api", "compress": "api", "domain": "api", "load": "api",
    "samples": "api", "verify": "api", "load_domain": "api", "Domain": "domains.union",
    "Box": "domain",
    "DomainError": "errors", "ExactcompError": "errors", "ModelError": "errors", "UnsupportedOpError": "errors",
    "VerificationError": "errors",
    "Dense": "ir.network", "Network": "ir.network", "TensorInfo": "ir.network", "Conv": "ir.conv", "Embed": "ir.skip",
    "Skip": "ir.skip", "NeuronAddress": "ir.address", "neuron_address": "ir.address", "find_neuron": "ir.address",
    "VerificationResult": "verify.compare", "TOLERANCES": "verify.compare",
    "stabilize": "finetune.api", "StabilizeResult": "finetune.api", "StabilizeOptions": "finetune.train",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        # a submodule, after a plain ``import exactcomp``: ``exactcomp.solvers.get_solver``,
        # ``exactcomp.formulations.bigm.build_bigm`` (``verify`` and ``domain`` stay the API functions above)
        return import_module(f".{name}", __name__)   # the import sets the attribute too
    raise AttributeError(f"module 'exactcomp' has no attribute {name!r}")


def __dir__():
    return __all__


class _Package(types.ModuleType):
    """``exactcomp.verify`` and ``exactcomp.domain`` are API functions *and* submodule names; importing
    the submodule must not replace the function (the submodules stay in ``sys.modules``)."""

    def __setattr__(self, name, value):
        if name in ("verify", "domain") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
