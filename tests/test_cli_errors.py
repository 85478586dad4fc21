"""The command line answers a bad date, a bad number or a missing file with one plain line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cai import cli
from tests.conftest import ROOT


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    try:
        code = cli.main(list(argv))
    except SystemExit as stop:
        code = stop.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize("argv, words", [
    (["run", "X", "--as-of", "2026-13-01"], "'2026-13-01' is not a date"),
    (["run", "X", "--as-of", "yesterday"], "'yesterday' is not a date"),
    (["run", "X", "--as-of", ""], "'' is not a date"),
    (["backtest", "X", "--from", "2011", "--to", "2011-11-01"], "'2011' is not a date"),
    (["backtest", "X", "--from", "2011-04-01", "--to", "01/11/2011"], "'01/11/2011' is not a date"),
])
def test_a_bad_date_is_one_line_and_exit_2(capsys, empty_db, argv, words):
    code, lines = _run(capsys, "--db", str(empty_db), *argv)
    assert code == 2 and len(lines) == 1 and words in lines[0] and "YYYY-MM-DD" in lines[0]
    assert not empty_db.exists()


@pytest.mark.parametrize("argv, words", [
    (["demo", "--profiles", "ten"], "'ten' is not a whole number"),
    (["demo", "--profiles", "1.5"], "'1.5' is not a whole number"),
    (["instances", "create", "--name", "A", "--goal", "b", "--window-days", "3x"], "'3x' is not a whole number"),
    (["segments", "create", "--instance", "X", "--name", "Y", "--min-score", "nan"], "'nan' is not a number"),
    (["segments", "create", "--instance", "X", "--name", "Y", "--max-score", "inf"], "'inf' is not a number"),
    (["segments", "create", "--instance", "X", "--name", "Y", "--min-score", "high"], "'high' is not a number"),
])
def test_a_bad_number_is_one_line_and_exit_2(capsys, empty_db, argv, words):
    code, lines = _run(capsys, "--db", str(empty_db), *argv)
    assert code == 2 and len(lines) == 1 and words in lines[0]


@pytest.mark.parametrize("argv", [
    ["ingest", "{missing}/events.csv"],
    ["ingest", "{missing}"],
    ["ingest", "--online-retail", "{missing}/online_retail.csv.gz"],
])
def test_a_missing_file_is_one_line_and_exit_2(capsys, empty_db, tmp_path, argv):
    argv = [arg.format(missing=tmp_path / "nowhere") for arg in argv]
    code, lines = _run(capsys, "--db", str(empty_db), *argv)
    assert code == 2 and len(lines) == 1 and "nowhere" in lines[0]


def test_an_export_to_an_unwritable_place_is_one_line_and_exit_2(capsys, trained_db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, lines = _run(capsys, "--db", str(trained_db), "scores", "export", "Product Purchase Propensity",
                       "--out", str(blocker / "scores.csv"))
    assert code == 2 and len(lines) == 1 and "a-file" in lines[0]


def test_the_real_command_prints_no_traceback(empty_db):
    done = subprocess.run([sys.executable, "-m", "cai", "--db", str(empty_db), "run", "X", "--as-of", "2026-02-30"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m cai run: argument --as-of: '2026-02-30' is not a date; write it as YYYY-MM-DD, e.g. 2026-10-15"]


def test_control_sequences_in_names_and_data_are_printed_not_obeyed(capsys, trained_db):
    """A name with a terminal's hidden-link sequence (OSC 8) or an event field with a screen-clearing one is
    printed as escapes, in tables and in error messages alike."""
    from cai import instances, segments

    link = "\x1b]8;;http://evil.test/\x07click me\x1b]8;;\x07"
    segments.create_segment(trained_db, f"Buyers {link}", segments.Rule(instance=instances.TUTORIAL_INSTANCE))
    assert cli.main(["--db", str(trained_db), "segments", "list"]) == 0
    out = capsys.readouterr().out
    assert "Buyers \\x1b]8;;http://evil.test/\\x07click me" in out and "\x1b" not in out and "\x07" not in out
    code, lines = _run(capsys, "--db", str(trained_db), "run", f"\x1b[2J{link}")
    assert code == 2 and "\\x1b[2J" in lines[0] and not any("\x1b" in line for line in lines)


def test_json_output_stays_json_when_a_name_holds_control_characters(capsys, trained_db):
    """JSON keeps DEL and the C1 controls raw; the terminal's escapes (\\x85) would make it invalid JSON."""
    from cai import instances, segments

    name = "Caf\u0085e\x7f \x1b[2J"
    segments.create_segment(trained_db, name, segments.Rule(instance=instances.TUTORIAL_INSTANCE))
    assert cli.main(["--db", str(trained_db), "segments", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(character in out for character in "\x1b\x7f\x85")
    assert name in [segment["name"] for segment in json.loads(out)]
