"""The example scripts as modules, loaded from examples/ as `python examples/NAME.py` would run them."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PUSH_SCRIPT = EXAMPLES / "push_to_hub.py"


def load_example(name: str):
    """examples/NAME.py as a module, registered in sys.modules (its dataclasses look their module up there)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the scripts import their sibling cli.py
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_push_script(argv, monkeypatch):
    """`python examples/push_to_hub.py ARGV...`, in this process (sys.argv and sys.path restored after the test)."""
    monkeypatch.syspath_prepend(str(PUSH_SCRIPT.parent))  # its sibling cli.py, as `python examples/push_to_hub.py`
    spec = importlib.util.spec_from_file_location("push_example", PUSH_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["push_to_hub.py", *map(str, argv)])
    module.main()
