"""`ddpm_hf.settings`: the flags a settings dataclass generates, and the values picked back from them."""

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from ddpm_hf.settings import add_arguments, pick, setting


@dataclass(frozen=True)
class Knobs:
    kinds: tuple[str, ...] = setting(("a", "b"), "which to run", choices=("a", "b", "c"))
    sizes: tuple[int, ...] = setting((8,), "image sizes")
    mode: str = setting("fast", "how to run", choices=("fast", "slow"))
    steps: int | None = setting(None, "steps; none means all")
    name: str | None = setting(None, "a name, 100% optional", "--old_name")
    switch: bool = setting(False, "a switch")
    unflagged: int = 3  # no help: not a flag


def parser_of(cls=Knobs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knobs")
    add_arguments(parser, cls)
    return parser


def parse(*argv: str) -> Knobs:
    return Knobs(**pick(vars(parser_of().parse_args(list(argv))), Knobs))


def test_defaults_come_from_the_dataclass():
    assert parse() == Knobs()
    assert "unflagged" not in vars(parser_of().parse_args([]))


def test_a_tuple_field_takes_several_values_from_its_choices(capsys):
    knobs = parse("--kinds", "c", "a", "--sizes", "16", "32")
    assert knobs.kinds == ("c", "a") and knobs.sizes == (16, 32)  # tuples, as made in Python: hashable, equal
    assert hash(knobs) == hash(Knobs(kinds=("c", "a"), sizes=(16, 32)))
    for argv, message in [
        (["--kinds", "a", "z"], "invalid choice: 'z'"),
        (["--kinds"], "expected at least one argument"),
        (["--sizes", "big"], "invalid int value: 'big'"),
        (["--mode", "medium"], "invalid choice: 'medium'"),
    ]:
        with pytest.raises(SystemExit):
            parse(*argv)
        assert message in capsys.readouterr().err


def test_aliases_optional_values_and_switches():
    assert parse("--old_name", "x").name == "x" and parse("--name", "y").name == "y"
    assert parse("--steps", "5").steps == 5 and parse("--steps", "none").steps is None
    assert parse("--switch").switch is True and parse("--switch", "false").switch is False


def test_help_shows_each_default_as_it_is_typed(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        parser_of().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "which to run (default: a b)" in text  # not "('a', 'b')"
    assert "--kinds {a,b,c} [{a,b,c} ...]" in text and "--mode {fast,slow}" in text
    assert "a name, 100% optional (default: None)" in text and "--name NAME, --old_name NAME" in text
    # The flag follows the field's default.
    (mode,) = [f for f in dataclasses.fields(Knobs) if f.name == "mode"]
    monkeypatch.setattr(mode, "default", "slow")
    assert parse().mode == "slow"


def test_pick_keeps_only_fields_and_leaves_other_lists_alone():
    @dataclass(frozen=True)
    class Lists:
        items: list[int] = dataclasses.field(default_factory=lambda: [1])

    values = {"items": [2, 3], "other": [4]}
    assert pick(values, Lists) == {"items": [2, 3]}
    assert pick({"kinds": ["b"], "model": "m"}, Knobs) == {"kinds": ("b",)}
