"""Shared helpers: tiny networks built independently of exactcomp's exporter."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp.domain import Box
from exactcomp.ir.network import Dense, Network, TensorInfo


def random_network(sizes, seed=0, bias_shift=0.0, scale=1.0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Dense(rng.normal(size=(o, i)) * scale, rng.normal(size=o) + bias_shift, k + 1, np.arange(o))
              for k, (i, o) in enumerate(zip(sizes, sizes[1:]))]
    out = TensorInfo("y", (sizes[-1],), "float32")
    return Network(tuple(layers), TensorInfo("x", (sizes[0],), "float32"), out, (out,))


def brute_forward(weights, biases, X):
    """Reference forward pass written from scratch (ReLU after all but the last layer)."""
    h = np.asarray(X, dtype=np.float64)
    for i, (W, b) in enumerate(zip(weights, biases)):
        h = h @ np.asarray(W, float).T + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    return h


def onnx_mlp(weights, biases, style="gemm", input_shape=None, dtype=np.float32, head=None, opset=17) -> onnx.ModelProto:
    """An ONNX ReLU MLP written directly with onnx.helper.

    style: ``gemm`` (Gemm transB=1), ``matmul`` (MatMul + Add, keras/tf2onnx style),
    ``gemm_nobias`` (Gemm without C, bias via Add), ``gemm_trans`` (transB=0, alpha/beta).
    """
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    n_in = weights[0].shape[1]
    input_shape = input_shape or (n_in,)
    nodes, inits = [], []
    x = "x"
    if len(input_shape) > 1:
        nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
        x = "flat"
    for i, (W, b) in enumerate(zip(weights, biases)):
        W = np.asarray(W, dtype=dtype)
        b = np.asarray(b, dtype=dtype)
        out = f"g{i}"
        if style == "gemm":
            inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [out], transB=1))
        elif style == "gemm_trans":
            inits += [numpy_helper.from_array((W.T / 2).astype(dtype), f"W{i}"),
                      numpy_helper.from_array((b / 4).astype(dtype), f"b{i}")]
            nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [out], transB=0, alpha=2.0, beta=4.0))
        elif style == "gemm_nobias":
            inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Gemm", [x, f"W{i}"], [f"m{i}"], transB=1))
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out]))
        elif style == "matmul":
            inits += [numpy_helper.from_array(np.ascontiguousarray(W.T), f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"]))
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out]))
        else:
            raise ValueError(style)
        x = out
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"h{i}"]))
            x = f"h{i}"
    outputs = []
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=1))
        nodes.append(helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0))
        outputs = [helper.make_tensor_value_info("probs", elem, ["N", weights[-1].shape[0]]),
                   helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"]))
        outputs = [helper.make_tensor_value_info("y", elem, ["N", weights[-1].shape[0]])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", elem, ["N", *input_shape])], outputs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_onnx(model, X: np.ndarray):
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    return sess.run(None, {inp.name: X.astype(dtype).reshape(len(X), *shape[1:])})


def random_weights(sizes, seed=0, scale=1.0, bias_shift=0.0):
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(o, i)) * scale for i, o in zip(sizes, sizes[1:])]
    bs = [rng.normal(size=o) + bias_shift for o in sizes[1:]]
    return Ws, bs


def tiny_model_folder(folder):
    """``folder`` with ``model.onnx`` (a small random 4-12-10-2 MLP) and ``box.json`` ([0, 1]): the CLI fault tests' input."""
    import json

    Ws, bs = random_weights([4, 12, 10, 2], seed=3, scale=0.5, bias_shift=0.2)
    onnx.save(onnx_mlp(Ws, bs), str(folder / "model.onnx"))
    (folder / "box.json").write_text(json.dumps({"lower": 0, "upper": 1}))
    return folder


@pytest.fixture
def unit_box():
    def make(n, lo=-1.0, hi=1.0):
        return Box(np.full(n, lo), np.full(n, hi))
    return make


def export_torch(module, path, dynamo: bool, shape=(1, 1, 8, 8)):
    """Write a torch module as ONNX: the legacy exporter with a dynamic batch axis (input ``x``, output
    ``y``), or the dynamo exporter (batch fixed to 1; skipped without onnxscript)."""
    import warnings

    import torch

    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(module, (torch.zeros(*shape),), dynamo=True, verbose=False).save(str(path))
        else:
            torch.onnx.export(module, (torch.zeros(*shape),), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return path


def assert_engine_matches_split_bound(net, box, targets, subdomains: int = 4, seed: int = 0):
    """Branch and bound's torch engine and the float64 split bound agree on random subdomains (random
    phases of unstable neurons, α, β) for each target ``(k, t, σ)``: two independent implementations."""
    import torch

    from exactcomp.bab.torch_bound import BoundEngine
    from exactcomp.bab.split_bounds import phases_of, split_bound
    from exactcomp.bounds import compute_bounds

    bounds = [(b.lower, b.upper) for b in compute_bounds(net, box)]
    rng = np.random.default_rng(seed)
    k = max(t[0] for t in targets)
    splits = [np.where(phases_of(lo, hi)[2], rng.integers(-1, 2, size=(subdomains, lo.size)), 0) for lo, hi in bounds[:k]]
    alpha = [rng.uniform(0, 1, size=(subdomains, lo.size)) for lo, _ in bounds[:k]]
    beta = [rng.uniform(0, 1, size=(subdomains, lo.size)) for lo, _ in bounds[:k]]
    for target in targets:
        j = target[0]
        engine = BoundEngine(net, box, bounds, target)
        got, _, _ = engine.bound([torch.as_tensor(s) for s in splits[:j]], [torch.as_tensor(a) for a in alpha[:j]],
                                 [torch.as_tensor(b) for b in beta[:j]])
        expected = split_bound(net, box, bounds, target, splits[:j], alpha[:j], beta[:j])
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)


def trained_digits_mlp(path, widths, seed: int):
    """A 64-widths-10 ReLU MLP trained without sparsity (60 Adam steps, lr 1e-2, on the first 1,200 rows) on
    scikit-learn's digits scaled into [0, 1], written as ONNX at ``path``: ``(path, X, y)``, the whole data set."""
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    torch.manual_seed(seed)
    sizes = (64, *widths)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X[:1200])), torch.from_numpy(y[:1200])).backward()
        opt.step()
    return export_torch(net, path, dynamo=False, shape=(1, 64)), X, y
