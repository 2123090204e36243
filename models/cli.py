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
from .request import PARAMS, RenderRequest
from .specs import SPECS


def build_parser(params: tuple[Param, ...] = PARAMS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description="HuMo inference engine")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render one take to an MP4 with its audio")
    r.add_argument("--checkpoint", default="tiny", choices=sorted(SPECS), help="model spec (default: tiny)")
    r.add_argument("--image", default=None, help="reference image (modes with I)")
    r.add_argument("--audio", default=None, help="audio track (modes with A)")
    for p in params:  # one flag per render parameter, from its definition
        r.add_argument(
            "--" + p.name.replace("_", "-"), type=p.type, default=None, choices=p.choices or None,
            required=bool(p.required), help=p.help,
        )  # fmt: skip
    r.add_argument("--weights", default=None, help="weights folder in the official layout (or $HUMO_WEIGHTS)")
    r.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    r.add_argument("-o", "--output", required=True, help="the MP4 to write; a .jpg thumbnail goes beside it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    given = {p.name: getattr(args, p.name) for p in PARAMS if getattr(args, p.name) is not None}
    request = RenderRequest(checkpoint=args.checkpoint, image=args.image, audio=args.audio, **given)
    from . import load_pipeline  # heavy imports after the arguments parse

    output = Path(args.output)
    try:
        resolved = request.resolved()  # bad input fails before any model loads
        pipeline = load_pipeline(resolved.spec.name, args.weights, args.device)
        with tqdm(total=resolved.steps, desc=f"{resolved.spec.name} {resolved.mode}", unit="step") as bar:
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
        "audio": result.audio_fit.action,
        "seconds": {k: round(v, 3) for k, v in result.timings.items()},
    }
    print(json.dumps(summary))
    return 0
