"""ONNX in and out: the importer (tracing the graph into the IR: ``onnx_import`` with ``onnx_values``,
``onnx_ops``, ``onnx_conv``, ``onnx_pool``, ``onnx_head``), the exporter (``onnx_export``), atomic file writes (``files``),
the witnesses file (``witness_file``) and reports read back for ``--resume`` (``resume``)."""
