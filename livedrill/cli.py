"""livedrill command line (placeholder until the CLI lands)."""


def main() -> int:
    raise SystemExit("livedrill: CLI not yet built")
