"""`python -m crmsync` runs the same CLI as the `crmsync` console script."""

from crmsync.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
