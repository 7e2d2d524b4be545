"""Where onnxruntime runs the comparison: its CPU execution provider (default) or CUDA's.

``cuda`` needs the ``onnxruntime-gpu`` package and a GPU: without either, a one-line
:class:`~exactcomp.errors.ExactcompError` (exit 2) with the install hint, never a silent fall-back to the
CPU (onnxruntime's own behaviour when a requested provider cannot start). Both models run on the same
provider and on the same points as on the CPU (:mod:`exactcomp.verify.points`).
"""

from __future__ import annotations

from exactcomp.errors import ExactcompError

#: --provider name -> onnxruntime execution provider.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def check_provider(name: str) -> str:
    """The onnxruntime provider for ``name``; an error when this onnxruntime cannot use it."""
    if name not in PROVIDERS:
        raise ExactcompError(f"--provider {name}: unknown (choose from {', '.join(PROVIDERS)})")
    provider = PROVIDERS[name]
    if name != "cpu":
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            raise ExactcompError(f"--provider {name}: this onnxruntime ({ort.__version__}) has no {provider}; "
                                 f"install onnxruntime-gpu (pip install onnxruntime-gpu) on a machine with an NVIDIA GPU")
    return provider


def check_session(session, name: str) -> None:
    """Refuse a session that fell back to the CPU although ``name`` was asked for (no usable GPU)."""
    wanted = PROVIDERS[name]
    if session.get_providers()[:1] != [wanted]:
        raise ExactcompError(f"--provider {name}: onnxruntime could not start {wanted} (no usable GPU or CUDA "
                             f"libraries?); it offered {', '.join(session.get_providers())}")
