"""A bug is not bad input: the CLI and the app log it (with its traceback, redacted) and say plainly that something
went wrong and where the log is; a user error (lib.errors.UserError) is shown as it is, with nothing logged."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lib.__main__ import main
from lib.errors import BUG_LOG, ConfigError, UserError
from tests.conftest import ROOT

pytestmark = pytest.mark.bug_expected


def test_user_errors_are_configuration_errors_and_still_value_errors():
    assert issubclass(UserError, ConfigError) and issubclass(UserError, ValueError)


def test_a_bug_in_the_cli_is_logged_not_reported_as_bad_input(tmp_path, monkeypatch, capsys):
    from lib import engine

    def broken(*args, **kwargs):
        raise ValueError("internal invariant broken near key sk-live1234567890abcdef")

    monkeypatch.setattr(engine, "open_kb", broken)
    code = main(["list", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    log = tmp_path / "data" / BUG_LOG
    assert code == 70
    assert "Something went wrong: an unexpected ValueError" in err and str(log) in err
    assert "internal invariant" not in err  # the message of a bug is not shown as if it were about the input
    text = log.read_text()
    assert "Traceback" in text and "internal invariant broken" in text and "in broken" in text
    assert "sk-live1234567890abcdef" not in text  # logged redacted


def test_a_user_error_in_the_cli_is_shown_and_nothing_is_logged(tmp_path, capsys):
    code = main(["report", "--run", "r1", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")])
    assert code == 2
    assert f"{tmp_path} is a folder: give the report's file name" in capsys.readouterr().err
    assert not (tmp_path / "data" / BUG_LOG).exists()


def test_a_bug_in_a_page_is_logged_and_the_page_says_where(tmp_path, monkeypatch):
    from lib import workspace_records

    def broken(self, collection=None):
        raise KeyError("no such column in a record")

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(workspace_records.History, "comparisons", broken)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/history.py").run()
    assert not at.exception  # no traceback for the user
    log = tmp_path / "data" / BUG_LOG
    shown = [e.value.replace("\\", "") for e in at.error]  # as written, markdown-escaped
    assert any("Something went wrong: an unexpected KeyError" in e and str(log) in e for e in shown), shown
    assert "no such column in a record" in log.read_text()
