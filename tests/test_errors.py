"""One error base: every error ddpm_hf raises on purpose is a `ddpm_hf.DDPMError`, and keeps its builtin base (so
`except ValueError` still catches a refused value). Checked over the source, so a new module cannot slip past it."""

import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path

import ddpm_hf
from ddpm_hf import DDPMError

PACKAGE = Path(ddpm_hf.__file__).parent
OPTIONAL = {"ddpm_hf.demo"}  # needs gradio (the demo extra); imported only where it is installed
# argparse's own error type, raised by the argparse `type=` functions so argparse reports it as a usage error.
ALLOWED = {"argparse.ArgumentTypeError"}


def raised_builtins(path: Path) -> list[str]:
    """`raise X(...)` of a builtin exception class in a source file, as FILE:LINE X."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            name = ast.unparse(func)
            builtin = getattr(builtins, name, None) if isinstance(func, ast.Name) else None
            if name not in ALLOWED and isinstance(builtin, type) and issubclass(builtin, BaseException):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    return found


def test_no_builtin_exception_is_raised_directly():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in raised_builtins(path)]
    assert found == [], "raise a ddpm_hf.errors class instead:\n" + "\n".join(found)


def test_every_error_class_of_the_package_is_a_ddpm_error():
    classes = []
    for info in pkgutil.walk_packages([str(PACKAGE)], "ddpm_hf."):
        if any(info.name == m or info.name.startswith(m + ".") for m in OPTIONAL):
            try:
                importlib.import_module("gradio")
            except ImportError:
                continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException):
                classes.append(cls)
    assert len(classes) > 20
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, DDPMError)]
    assert outside == []
    # Each keeps a builtin base besides DDPMError, so callers' `except ValueError` / `except OSError` still work.
    bare = [c.__qualname__ for c in classes if c is not DDPMError and builtin_base(c) is None]
    assert bare == []


def builtin_base(cls: type) -> type | None:
    """The most specific builtin exception `cls` derives from, other than Exception itself."""
    generic = (Exception, BaseException, object)
    return next((k for k in cls.__mro__ if k.__module__ == "builtins" and k not in generic), None)


def test_the_base_is_exported_and_catches_the_package_refusals():
    from ddpm_hf import DDPMPaperScheduler

    try:
        DDPMPaperScheduler(variance_type="learned")
    except DDPMError as e:
        assert isinstance(e, ValueError)
    else:
        raise AssertionError("a refused variance type raised nothing")
