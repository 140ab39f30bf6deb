"""Command line: placeholder until the run path lands."""


def main(argv: list[str] | None = None) -> int:
    return 0
