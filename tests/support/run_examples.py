"""Run several examples/NAME.py mains one after another in one process, so that one `accelerate launch` (whose
start-up is most of a small run's time) serves them all:

    accelerate launch ... tests/support/run_examples.py fid_stats ARG... ::: evaluate ARG...
"""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEPARATOR = ":::"


def run(name: str, argv: list[str]) -> object:
    """examples/NAME.py's `main(argv)` in this process; returns what it returns."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples' sibling cli.py, as when they run as scripts
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def main(argv: list[str]) -> None:
    while argv:
        cut = argv.index(SEPARATOR) if SEPARATOR in argv else len(argv)
        run(argv[0], argv[1:cut])
        argv = argv[cut + 1 :]


if __name__ == "__main__":
    main(sys.argv[1:])
