"""Domain files as users give them (issue 20, point 5): from pipes (``--domain /dev/stdin``, bash's
``<(cat box.json)``, which is ``/dev/fd/N``), read exactly once, and the one-line errors for files that are
not domains at all (an ONNX model, a NumPy array, other binary data)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading

import numpy as np
import onnx
import pytest

from exactcomp.domain import load_box
from exactcomp.domains.union import load_domain
from exactcomp.errors import DomainError

from .conftest import onnx_mlp, random_weights
from .faults import assert_one_line_error, changes, snapshot

BOX = json.dumps({"lower": 0, "upper": 1})
VNNLIB = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(4))
VNNLIB = "; input box of four inputs\n" + VNNLIB


@pytest.fixture
def work(tmp_path):
    Ws, bs = random_weights([4, 12, 10, 2], seed=3, scale=0.5, bias_shift=0.2)
    onnx.save(onnx_mlp(Ws, bs), str(tmp_path / "model.onnx"))
    (tmp_path / "box.json").write_text(BOX)
    (tmp_path / "prop.vnnlib").write_text(VNNLIB)
    return tmp_path


def _run(*args, cwd, stdin: bytes | None = None, fd_data: bytes | None = None):
    """``python -m exactcomp ARGS``; ``{fd}`` in an argument is replaced by ``/dev/fd/N`` of a pipe
    fed with ``fd_data`` (what bash's ``<(...)`` passes); ``stdin`` is sent through a pipe."""
    command = [sys.executable, "-m", "exactcomp"]
    if fd_data is None:
        return subprocess.run([*command, *map(str, args)], input=stdin, capture_output=True, cwd=cwd, timeout=300)
    read, write = os.pipe()
    args = [str(a).replace("{fd}", f"/dev/fd/{read}") for a in args]
    proc = subprocess.Popen([*command, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, pass_fds=(read,))
    os.close(read)

    def feed():
        try:
            os.write(write, fd_data)
        except BrokenPipeError:
            pass
        finally:
            os.close(write)

    feeder = threading.Thread(target=feed)
    feeder.start()
    out, err = proc.communicate(timeout=300)
    feeder.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _text(proc):
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


# ---------------------------------------------------------------- pipes


@pytest.mark.parametrize("how", ["stdin", "fd"])
@pytest.mark.parametrize("kind", ["json", "vnnlib", "vnnlib.gz"])
def test_compress_reads_a_domain_from_a_pipe(work, how, kind):
    data = {"json": BOX.encode(), "vnnlib": VNNLIB.encode(), "vnnlib.gz": gzip.compress(VNNLIB.encode())}[kind]
    source = "/dev/stdin" if how == "stdin" else "{fd}"
    proc = _run("compress", "model.onnx", "--domain", source, "-o", "out.onnx", "--report", "r.json", "--quiet",
                cwd=work, **({"stdin": data} if how == "stdin" else {"fd_data": data}))
    assert proc.returncode == 0, proc.stderr.decode()
    assert (work / "out.onnx").is_file()
    info = json.loads((work / "r.json").read_text())["domain_info"]
    assert info["sha256"] == hashlib.sha256(data).hexdigest()   # hashed from the very bytes parsed
    assert info["dimensions"] == 4 and info["boxes"] == 1
    assert info["sources"][0].startswith("/dev/")


@pytest.mark.parametrize("how", ["stdin", "fd"])
def test_verify_reads_a_domain_from_a_pipe(work, how):
    source = "/dev/stdin" if how == "stdin" else "{fd}"
    proc = _run("verify", "model.onnx", "model.onnx", "--domain", source, "--json", cwd=work,
                **({"stdin": BOX.encode()} if how == "stdin" else {"fd_data": BOX.encode()}))
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["passed"]


def test_a_piped_domain_beside_a_file_is_one_union(work):
    (work / "far.json").write_text(json.dumps({"lower": 2, "upper": 3}))
    proc = _run("verify", "model.onnx", "model.onnx", "--domain", "far.json", "--domain", "{fd}", "--json",
                cwd=work, fd_data=VNNLIB.encode())
    assert proc.returncode == 0, proc.stderr.decode()


def test_domain_show_with_model_reads_a_pipe(work):
    proc = _run("domain", "show", "{fd}", "--model", "model.onnx", "--json", cwd=work, fd_data=VNNLIB.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["dimensions"] == 4


def test_domain_show_without_model_reads_a_pipe(work):
    proc = _run("domain", "show", "{fd}", "--json", cwd=work, fd_data=BOX.replace("0", "[0, 0, 0]").encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["dimensions"] == 3


def test_stdin_redirected_from_an_output_is_still_refused(work):
    """/dev/stdin names the file it is redirected from: -o over it is refused, as for the file itself."""
    with open(work / "box.json", "rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "exactcomp", "compress", "model.onnx", "--domain", "/dev/stdin",
                               "-o", "box.json"], stdin=fh, capture_output=True, text=True, cwd=work, timeout=300)
    assert_one_line_error(proc, 2, "would overwrite the domain file /dev/stdin")
    assert (work / "box.json").read_text() == BOX


def test_a_pipe_read_twice_in_one_process_gives_the_same_domain(tmp_path):
    """A second load of the same pipe (e.g. bench, one --domain for several models) sees the same bytes."""
    read, write = os.pipe()
    os.write(write, BOX.encode())
    os.close(write)
    try:
        first = load_domain([f"/dev/fd/{read}"], (4,))
        again = load_domain([f"/dev/fd/{read}"], (4,))
    finally:
        os.close(read)
    assert first.sha256 == again.sha256 == hashlib.sha256(BOX.encode()).hexdigest()
    np.testing.assert_array_equal(again.parts[0].upper, np.ones(4))


def test_the_format_is_sniffed_when_the_name_does_not_tell(tmp_path):
    (tmp_path / "prop").write_text(VNNLIB)
    (tmp_path / "box").write_text(BOX)
    (tmp_path / "prop.txt").write_text("\n\n  " + VNNLIB.split("\n", 1)[1])   # '(' first
    for name in ("prop", "box", "prop.txt"):
        domain = load_domain([tmp_path / name], (4,))
        np.testing.assert_array_equal(domain.parts[0].lower, np.zeros(4))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DomainError, match="empty"):
        load_domain([tmp_path / "empty"], (4,))


# ---------------------------------------------------------------- files that are not domains


def _not_domains(work) -> dict[str, tuple[bytes | None, str]]:
    np.save(work / "data.npy", np.zeros((3, 4), np.float32))
    np.savez(work / "data.npz", a=np.zeros(4))
    (work / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (work / "zeros.json").write_bytes(b"\x00" * 64)
    onnx_bytes = (work / "model.onnx").read_bytes()
    return {
        "model.onnx": (None, "model.onnx: not a domain file (looks like ONNX)"),
        "data.npy": (None, "data.npy: not a domain file (looks like a NumPy array; make a box with "
                           "'exactcomp domain from-data')"),
        "data.npz": (None, "data.npz: not a domain file (looks like a NumPy .npz archive"),
        "blob.bin": (None, "blob.bin: not a domain file (binary data; expected box JSON or VNN-LIB)"),
        "zeros.json": (None, "zeros.json: not a domain file (binary data; expected box JSON or VNN-LIB)"),
        "{fd}": (onnx_bytes, ": not a domain file (looks like ONNX)"),
    }


@pytest.mark.parametrize("command", ["compress", "verify", "show"])
def test_a_file_that_is_not_a_domain_is_a_one_line_error(work, command):
    for name, (fd_data, message) in _not_domains(work).items():
        before = snapshot(work)
        args = {"compress": ["compress", "model.onnx", "--domain", name, "-o", "out.onnx"],
                "verify": ["verify", "model.onnx", "model.onnx", "--domain", name],
                "show": ["domain", "show", name, "--model", "model.onnx"]}[command]
        proc = _text(_run(*args, cwd=work, fd_data=fd_data))
        assert_one_line_error(proc, 2, message)
        assert "codec" not in proc.stderr
        assert changes(before, snapshot(work)) == set(), name


def test_not_a_domain_in_the_python_api(work):
    for name, (fd_data, message) in _not_domains(work).items():
        if fd_data is None:
            with pytest.raises(DomainError) as err:
                load_domain([work / name], (4,))
            assert str(err.value).startswith(str(work / name)) and message.split(":", 1)[1] in str(err.value)
    with pytest.raises(DomainError, match="looks like ONNX"):
        load_box(work / "model.onnx", (4,))
    renamed = work / "model.vnnlib"   # the content decides, not the name
    renamed.write_bytes((work / "model.onnx").read_bytes())
    with pytest.raises(DomainError, match="model.vnnlib: not a domain file \\(looks like ONNX\\)"):
        load_domain([renamed], (4,))
