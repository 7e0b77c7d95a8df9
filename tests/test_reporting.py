"""One way to say things: library messages go through `logging` (`ddpm_hf.reporting.get_logger`) and every bar
through `ddpm_hf.reporting.progress_bar`, so that verbosity, the progress-bar switch and the main-process rule hold
everywhere. Checked over the source, so a new module cannot slip past it."""

import ast
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import ddpm_hf
import processes
from ddpm_hf import reporting
from ddpm_hf.errors import InputError
from ddpm_hf.reporting import EVERY_PROCESS, get_logger, progress_bar, track
from tiny import tiny_pipeline

PACKAGE = Path(ddpm_hf.__file__).parent
HOME = "reporting.py"  # where tqdm and standard output are used, for everyone else
# Not switched over yet: each still prints or makes its own bar (and must leave this list once it does not).
STREAMS = {"sys.stdout", "sys.stderr"}


def direct_reports(source: str, name: str) -> list[str]:
    """`print(...)`, `x.print(...)` (Accelerate's), writes to sys.stdout / sys.stderr and tqdm imports in the source
    of the file `name`, as NAME:LINE WHAT, in the order of the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                what = "print"
            elif isinstance(func, ast.Attribute) and func.attr == "print":
                what = ast.unparse(func)
            elif isinstance(func, ast.Attribute) and func.attr == "write" and ast.unparse(func.value) in STREAMS:
                what = ast.unparse(func)
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tqdm" for a in node.names):
            what = "import tqdm"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tqdm":
            what = f"from {node.module} import"
        if what:
            found.append((node.lineno, f"{name}:{node.lineno} {what}"))
    return [hit for _, hit in sorted(found)]


def test_no_module_prints_or_makes_its_own_bar():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name != HOME:
            found[name] = direct_reports(path.read_text(), name)
    unexpected = [hit for hits in found.values() for hit in hits]
    assert unexpected == [], "use ddpm_hf.reporting (get_logger, progress_bar, write_result):\n" + "\n".join(unexpected)


def test_the_scan_sees_what_it_forbids():
    source = (
        "import sys\nfrom tqdm.auto import tqdm\nimport tqdm.std\nprint('x')\naccelerator.print('x')\n"
        "sys.stderr.write('x')\nsys.stdout.write('x')\nlogger.info('x')\nfile.write('x')\n"
    )
    hits = [hit.split(" ", 1)[1] for hit in direct_reports(source, "probe.py")]
    assert hits == [
        "from tqdm.auto import",
        "import tqdm",
        "print",
        "accelerator.print",
        "sys.stderr.write",
        "sys.stdout.write",
    ]


@pytest.fixture
def settings():
    """The library's verbosity and bar switch as they were, after the test."""
    level, bars = reporting.get_verbosity(), reporting.is_progress_bar_enabled()
    yield
    reporting.set_verbosity(level)
    (reporting.enable_progress_bar if bars else reporting.disable_progress_bar)()


def test_messages_go_to_standard_error_at_info_by_default(capsys, settings):
    log = get_logger("ddpm_hf.tests")
    assert log.name == "ddpm_hf.tests" and log.parent is logging.getLogger("ddpm_hf")
    log.info("an info message")
    log.debug("a debug message")
    said = capsys.readouterr()
    assert "an info message" in said.err and "a debug message" not in said.err and said.out == ""
    reporting.write_result("RESULT: 1.0")
    assert capsys.readouterr().out == "RESULT: 1.0\n"


def test_the_verbosity_functions_set_the_level(capsys, settings):
    log = get_logger("ddpm_hf.tests")
    reporting.set_verbosity_warning()
    assert reporting.get_verbosity() == logging.WARNING
    log.info("an info message")
    log.warning("a warning")
    said = capsys.readouterr().err
    assert "an info message" not in said and "a warning" in said
    reporting.set_verbosity_error()
    log.warning("a second warning")
    assert "a second warning" not in capsys.readouterr().err
    reporting.set_verbosity_debug()
    log.debug("a debug message")
    assert "a debug message" in capsys.readouterr().err
    reporting.set_verbosity_info()
    assert reporting.get_verbosity() == logging.INFO


def test_loggers_outside_the_library_are_refused():
    with pytest.raises(InputError, match="not under the library's root logger"):
        get_logger("elsewhere")


def test_only_the_main_process_speaks_unless_every_process_is_asked(capsys, monkeypatch, settings):
    monkeypatch.setattr(reporting, "is_main_process", lambda: False)
    log = get_logger("ddpm_hf.tests")
    log.warning("said by the main process only")
    log.warning("said by every process", extra=EVERY_PROCESS)
    with progress_bar(total=3, desc="a bar on another process") as bar:
        bar.update(3)
    said = capsys.readouterr().err
    assert "said by the main process only" not in said and "said by every process" in said
    assert "a bar on another process" not in said


def unlaunched(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """This process as a launcher's worker before Accelerate's state exists: only the rank variables tell."""
    monkeypatch.delitem(sys.modules, "accelerate.state", raising=False)
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "env, main",
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "1", "LOCAL_RANK": "1"}, False),
        ({"RANK": "2", "LOCAL_RANK": "0"}, False),  # the first process of a second machine
        ({"LOCAL_RANK": "1"}, False),
    ],
)
def test_the_main_process_by_the_launchers_variables(monkeypatch, env, main):
    unlaunched(monkeypatch, **env)
    assert reporting.is_main_process() is main


@pytest.mark.parametrize("main", [True, False])
def test_accelerates_state_decides_once_it_exists(monkeypatch, main):
    state = type("PartialState", (), {"_shared_state": {"process_index": 0 if main else 1}, "is_main_process": main})
    monkeypatch.setitem(sys.modules, "accelerate.state", SimpleNamespace(PartialState=state))
    monkeypatch.setenv("RANK", "1" if main else "0")  # the variables say the opposite: the state wins
    assert reporting.is_main_process() is main


def test_the_progress_bar_switch_hides_every_bar(settings):
    with progress_bar(range(3)) as bar:
        assert not bar.disable
    with progress_bar(range(3), disable=True) as bar:
        assert bar.disable
    reporting.disable_progress_bar()
    assert not reporting.is_progress_bar_enabled()
    with progress_bar(total=3) as bar:
        assert bar.disable
    assert list(track(range(3), True)) == [0, 1, 2]
    assert track(range(3), True).disable
    reporting.enable_progress_bar()
    assert not track(range(3), True).disable and track(range(3), False).disable
    assert track(range(3), lambda iterable: ["custom", *iterable]) == ["custom", 0, 1, 2]


def test_the_pipelines_bar_follows_the_switch_and_its_config(settings):
    pipe = tiny_pipeline()  # set_progress_bar_config(disable=True)
    assert pipe.progress_bar(range(2)).disable
    pipe.set_progress_bar_config(desc="denoising")
    with pipe.progress_bar(total=2) as bar:
        assert not bar.disable and bar.desc == "denoising"
    reporting.disable_progress_bar()
    assert pipe.progress_bar(range(2)).disable
    with pytest.raises(ValueError, match="Either `total` or `iterable`"):
        pipe.progress_bar()


def run_python(code: str, **env: str) -> processes.subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"RANK", "LOCAL_RANK"} and not k.startswith("DDPM_HF_")}
    result = processes.run([sys.executable, "-c", code], env={**clean, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


SAY = (
    "from ddpm_hf.reporting import EVERY_PROCESS, get_logger, progress_bar\n"
    "log = get_logger('ddpm_hf.tests')\n"
    "log.info('INFO-LINE')\n"
    "log.warning('WARNING-LINE')\n"
    "log.warning('EVERY-PROCESS-LINE', extra=EVERY_PROCESS)\n"
    "with progress_bar(total=2, desc='BAR-LINE') as bar:\n"
    "    bar.update(2)\n"
)


def test_the_verbosity_variable_sets_the_default_level():
    said = run_python(SAY, DDPM_HF_VERBOSITY="warning").stderr
    assert "INFO-LINE" not in said and "WARNING-LINE" in said and "BAR-LINE" in said


def test_a_process_of_rank_1_says_nothing_but_what_every_process_says():
    result = run_python(SAY, RANK="1", LOCAL_RANK="1", WORLD_SIZE="2")
    assert result.stdout == "" and result.stderr.strip() == "EVERY-PROCESS-LINE"
