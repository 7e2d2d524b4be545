"""exactcomp: exact compression of ReLU networks by proving neuron stability over an input box.

Python API (mirrors the CLI)::

    import exactcomp
    net = exactcomp.load("model.onnx")
    result = exactcomp.compress(net, "box.json")      # analysis + rewriting
    result.save("small.onnx")
    check = exactcomp.verify("model.onnx", "small.onnx", "box.json")
"""

from .analysis import Analysis, AnalysisOptions, LayerAnalysis, Status
from .api import CompressionResult, analyze, compress, domain, load, samples, verify
from .domain import Box
from .errors import DomainError, ExactcompError, ModelError, UnsupportedOpError, VerificationError
from .network import Dense, Network, TensorInfo
from .verify import VerificationResult

__version__ = "0.1.0"

__all__ = [
    "Analysis", "AnalysisOptions", "Box", "CompressionResult", "Dense", "DomainError", "ExactcompError",
    "LayerAnalysis", "ModelError", "Network", "Status", "TensorInfo", "UnsupportedOpError",
    "VerificationError", "VerificationResult", "analyze", "compress", "domain", "load", "samples", "verify",
    "__version__",
]
