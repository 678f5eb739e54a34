"""The `pointengine` command: `info`, and `demo` (the main job on a built-in synthetic scan)."""

import argparse


def cmd_info(args) -> int:
    from .build_info import build_info

    print("\n".join(build_info().lines()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointengine", description="Sparse point-cloud inference for lidar.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, build flags").set_defaults(run=cmd_info)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
