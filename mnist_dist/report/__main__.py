"""`python -m mnist_dist.report [RESULTS_DIR]`, the same as `mnist-dist report`."""
import argparse
import sys

from . import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnist_dist.report", description=cli.__doc__.split("\n")[0])
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
