"""The console commands: one parser per command, the same under ``python -m occflow_ros.cli``."""

from __future__ import annotations

import pytest

from occflow_ros.cli import main, make_dataset_main

COMMANDS = ("train", "make-dataset", "eval", "replay", "make-bag", "demo")


def test_every_command_is_a_sub_command_of_the_one_entry_point(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(f"    {name}" in text for name in COMMANDS)
    for sources in (["eval", "--help"], ["make-bag", "--help"]):
        with pytest.raises(SystemExit):
            main(sources)
    helps = capsys.readouterr().out
    assert all(s in helps for s in ("synthetic", "dfaust", "records", "bag"))


@pytest.mark.parametrize("argv, words", [
    ([], "required: COMMAND"),
    (["eval"], "required: SOURCE"),
    (["eval", "dfaust"], "the following arguments are required: paths"),
    (["eval", "bag", "a.mcap", "b.mcap"], "unrecognized arguments: b.mcap"),
    (["eval", "synthetic", "--views", "3"], "unrecognized arguments: --views"),  # dfaust's own
    (["replay"], "the following arguments are required: input, output"),
])
def test_wrong_command_lines_are_refused_with_the_reason(argv, words, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and words in capsys.readouterr().err


def test_a_sub_command_runs_the_same_code_as_its_console_command(tmp_path, capsys):
    args = ["--seed", "5", "--shards", "1", "--per-shard", "1", "--width", "64", "--height", "48",
            "--no-progress"]
    assert main(["make-dataset", "--out", str(tmp_path / "a"), *args]) == 0
    assert make_dataset_main(["--out", str(tmp_path / "b"), *args]) == 0
    a, b = (sorted(p.name for p in (tmp_path / d).iterdir()) for d in "ab")
    assert a == b and len(a) == 1
    assert (tmp_path / "a" / a[0]).read_bytes() == (tmp_path / "b" / b[0]).read_bytes()
