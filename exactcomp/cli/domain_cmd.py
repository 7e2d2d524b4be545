"""``exactcomp domain``: build box files from data or balls around inputs, and show what a domain holds.

    exactcomp domain from-data DATA.npy [--margin M] [--within BOX | --clip LO HI] [--model MODEL] -o OUT.json
    exactcomp domain ball POINTS.npy --eps E [--within BOX | --clip LO HI] [--model MODEL] -o OUT.json
    exactcomp domain show FILE... [--model MODEL] [--json]

Rows of ``DATA.npy`` / ``POINTS.npy`` are inputs (a 1-D array is one input); with ``--model`` each row must
match the model's input (shape or size). ``OUT`` ending with ``.vnnlib`` is written as VNN-LIB. ``show`` reads box JSON and VNN-LIB files (several: their union).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from exactcomp.errors import DomainError


def add_parser(sub, exit_codes: str, number) -> None:
    d = sub.add_parser("domain", help="build box files from data or balls around inputs; show a domain",
                       description=__doc__.split("\n\n")[0], epilog=exit_codes,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = d.add_subparsers(dest="domain_command", required=True, metavar="ACTION", help="from-data, ball or show")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", type=Path, help="ONNX model whose input the rows must match")
    outer = common.add_mutually_exclusive_group()
    outer.add_argument("--within", type=Path, metavar="BOX", help="clip to this box file")
    outer.add_argument("--clip", type=float, nargs=2, metavar=("LO", "HI"), help="clip every entry to [LO, HI]")
    common.add_argument("-o", "--output", type=Path, required=True,
                        help="domain file to write: box JSON, or VNN-LIB when it ends with .vnnlib")
    f = dsub.add_parser("from-data", parents=[common], help="per-entry min/max of the rows of an .npy array")
    f.add_argument("data", type=Path, help=".npy of inputs, one per row")
    f.add_argument("--margin", type=number(float, 0.0, 1e6), default=0.0, metavar="M",
                   help="widen each entry's range by M times its width on both sides (default 0)")
    b = dsub.add_parser("ball", parents=[common], help="an L-infinity ball around each row of an .npy array (their union)")
    b.add_argument("points", type=Path, help=".npy of inputs, one per row")
    b.add_argument("--eps", type=number(float, 0.0, 1e300), required=True, metavar="E", help="radius")
    s = dsub.add_parser("show", help="dimensions, boxes, fixed inputs and a volume proxy of domain files")
    s.add_argument("files", type=Path, nargs="+", help="box JSON or VNN-LIB files (several: their union)")
    s.add_argument("--model", type=Path, help="ONNX model whose input the domain must match")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")


def _shape(args, size_hint: int | None = None) -> tuple[int, ...] | None:
    if args.model is None:
        return None if size_hint is None else (size_hint,)
    from exactcomp import api

    return tuple(api.load(args.model).input.shape)


def _rows(path: Path, shape) -> np.ndarray:
    from exactcomp.domain import read_npy

    arr = read_npy(path)
    if arr.dtype.kind not in "iuf":
        raise DomainError(f"{path}: expected a .npy array of real numbers")
    if arr.size == 0:
        raise DomainError(f"{path}: holds no inputs (shape {list(arr.shape)})")
    if shape is not None:
        size = int(np.prod(shape))
        if arr.size % size or (arr.ndim > 1 and arr.shape[1:] not in (tuple(shape), (size,)) and arr.shape != tuple(shape)):
            raise DomainError(f"{path}: shape {list(arr.shape)} does not hold inputs of shape {list(shape)}")
        return arr.astype(np.float64).reshape(-1, size)
    return arr.astype(np.float64).reshape(1, -1) if arr.ndim == 1 else arr.astype(np.float64).reshape(len(arr), -1)


def _outer(args, size: int):
    from exactcomp.domain import Box, load_box

    if args.within is not None:
        return load_box(args.within, (size,))
    if args.clip is not None:
        lo, hi = args.clip
        if not lo <= hi:
            raise DomainError(f"--clip {lo:g} {hi:g}: LO must not exceed HI")
        return Box(np.full(size, lo), np.full(size, hi))
    return None


def _write(args, parts, inputs: dict) -> None:
    """Box JSON, or VNN-LIB when the output ends with ``.vnnlib``."""
    from exactcomp.domains.derive import domain_json
    from exactcomp.domains.union import is_vnnlib
    from exactcomp.domains.vnnlib import vnnlib_text
    from exactcomp.io.files import OutputSet, json_bytes

    outputs = OutputSet()
    outputs.add("-o/--output", args.output)
    outputs.check(inputs)
    if is_vnnlib(args.output) and args.output.suffix == ".gz":
        raise DomainError(f"{args.output}: write an uncompressed .vnnlib file")
    data = vnnlib_text(parts).encode() if is_vnnlib(args.output) else json_bytes(domain_json(parts))
    with outputs:
        outputs.stage("-o/--output", lambda fh: fh.write(data))
        outputs.commit()


def _print_summary(info: dict, what: str) -> None:
    print(f"{what}: {info['dimensions']} inputs, {info['boxes']} box{'es' if info['boxes'] > 1 else ''}, "
          f"{info['fixed_inputs']} fixed on every box"
          + (f" (first: {info['fixed_indices']})" if info["fixed_inputs"] else ""))
    for i, p in enumerate(info["parts"][:10]):
        volume = "n/a" if p["log10_volume"] is None else f"{p['log10_volume']:.1f}"
        print(f"  box {i + 1}: {p['fixed_inputs']} fixed, mean width {p['mean_width']:.4g}, geometric mean width "
              f"{p['geometric_mean_width']:.4g} (non-fixed), log10 volume {volume}, lower in "
              f"[{p['lower_range'][0]:g}, {p['lower_range'][1]:g}], upper in [{p['upper_range'][0]:g}, {p['upper_range'][1]:g}]")
    if len(info["parts"]) > 10:
        print(f"  ... {len(info['parts']) - 10} more boxes")


def cmd_domain(args) -> int:
    from exactcomp.cli.console import print_json as _print_json
    from exactcomp.domains import derive

    if args.domain_command == "show":
        from exactcomp.domains.union import load_domain

        whole = load_domain(args.files, _shape(args))   # no --model (None): the size the first file declares
        info = {**whole.describe(), **derive.summary(whole.parts)}
        if args.json:
            _print_json(info)
        else:
            _print_summary(info, ", ".join(map(str, args.files)))
        return 0
    source = args.data if args.domain_command == "from-data" else args.points
    rows = _rows(source, _shape(args))
    outer = _outer(args, rows.shape[1])
    if args.domain_command == "from-data":
        parts = [derive.box_from_data(rows, args.margin, outer, str(source))]
    else:
        parts = derive.balls(rows, args.eps, outer, str(source))
    _write(args, parts, {"input array": source, "outer box (--within)": args.within, "model": args.model})
    _print_summary(derive.summary(parts), str(args.output))
    return 0
