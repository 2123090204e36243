"""`python -m models render ...`: one take to an MP4, with a progress bar."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from .errors import ModelsError
from .params import Param
from .request import PARAMS, LoraUse, RenderRequest
from .specs import SPECS


def lora_use(text: str) -> LoraUse:
    """`FILE` or `FILE:STRENGTH` (a file name may hold colons: only a number after the last counts)."""
    path, _, strength = text.rpartition(":")
    try:
        return LoraUse(path, float(strength)) if path else LoraUse(text)
    except ValueError:
        return LoraUse(text)


def build_parser(params: tuple[Param, ...] = PARAMS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description="HuMo inference engine")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render one take to an MP4 with its audio")
    r.add_argument("--checkpoint", default="tiny", choices=sorted(SPECS), help="model spec (default: tiny)")
    r.add_argument("--image", default=None, help="reference image (modes with I)")
    r.add_argument("--audio", default=None, help="audio track (modes with A)")
    r.add_argument(
        "--lora", action="append", default=[], type=lora_use, metavar="FILE[:STRENGTH]",
        help="a LoRA (.safetensors) to stack on the DiT, strength 1 unless given; repeat to stack several, in order",
    )  # fmt: skip
    for p in params:  # one flag per render parameter, from its definition
        r.add_argument(
            "--" + p.name.replace("_", "-"), type=p.type, default=None, choices=p.choices or None,
            required=bool(p.required), help=p.help,
        )  # fmt: skip
    if any(p.name == "guidance" for p in params):  # the one alias: what step-distilled LoRAs want
        r.add_argument(
            "--no-guidance", dest="guidance", action="store_const", const="off", help="the same as --guidance off"
        )
    r.add_argument("--weights", default=None, help="weights folder in the official layout (or $HUMO_WEIGHTS)")
    r.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    r.add_argument(
        "--attention",
        default="auto",
        help="self-attention kernel: auto (default: the fastest exact one installed; fa4 on Hopper), fa4, sdpa, "
        "or fa3-fp8 (opt-in: FP8, faster and less exact; Hopper)",
    )
    r.add_argument("-o", "--output", required=True, help="the MP4 to write; a .jpg thumbnail goes beside it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    given = {p.name: getattr(args, p.name) for p in PARAMS if getattr(args, p.name) is not None}
    request = RenderRequest(
        checkpoint=args.checkpoint, image=args.image, audio=args.audio, loras=tuple(args.lora), **given
    )
    from . import load_pipeline  # heavy imports after the arguments parse

    output = Path(args.output)
    try:
        resolved = request.resolved()  # bad input fails before any model loads
        pipeline = load_pipeline(resolved.spec.name, args.weights, args.device, args.attention)
        windows = len(resolved.windows)  # a long take's steps are every window's
        desc = f"{resolved.spec.name} {resolved.mode}" + (f" {windows} windows" if windows > 1 else "")
        with tqdm(total=resolved.steps * windows, desc=desc, unit="step") as bar:
            result = pipeline.render(resolved, lambda i, n: bar.update(i - bar.n))
        output.parent.mkdir(parents=True, exist_ok=True)
        thumbnail = output.with_suffix(".jpg")
        result.write(output, thumbnail)
    except ModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        "output": str(output),
        "thumbnail": str(thumbnail),
        "frames": resolved.frames,
        "windows": windows,
        "audio": result.audio_fit.action,
        "loras": [{"sha256": u["sha256"], "strength": u["strength"]} for u in result.engine["loras"]["loras"]],
        "seconds": {k: round(v, 3) for k, v in result.timings.items()},
    }
    print(json.dumps(summary))
    return 0
