"""``python -m efficient_sam3 info [--preset edge]``: parameter table per module."""

from __future__ import annotations

import argparse

from efficient_sam3.config import EfficientSam3Config


def parameter_table(model) -> list[tuple[str, int]]:
    """(top-level module, parameter count) rows in model order, then the total."""
    rows = [(name, sum(p.numel() for p in child.parameters())) for name, child in model.named_children()]
    return rows + [("total", sum(p.numel() for p in model.parameters()))]


def format_table(rows: list[tuple[str, int]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"{'module':<{width}}  {'parameters':>12}  {'M':>8}", "-" * (width + 24)]
    lines += [f"{name:<{width}}  {count:>12,}  {count / 1e6:>8.3f}" for name, count in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m efficient_sam3")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the parameter table of a preset")
    info.add_argument("--preset", default="edge", help="preset name (edge, tiny, es-{rv,tv,ev}-{s,m,l})")
    args = parser.parse_args(argv)

    from efficient_sam3.model import EfficientSam3Model

    config = EfficientSam3Config.from_preset(args.preset)
    model = EfficientSam3Model(config)
    print(f"EfficientSAM3 preset {args.preset!r}: {config.image_size} px, memory {config.memory.context_frames} "
          f"frames -> {config.memory.num_latents} tokens")
    print(format_table(parameter_table(model)))


if __name__ == "__main__":
    main()
