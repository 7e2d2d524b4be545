"""Checking a compressed model against its original with onnxruntime (:mod:`exactcomp.verify.compare`).

(``exactcomp.verify`` as an attribute of the package is the API function :func:`exactcomp.api.verify`.)"""
