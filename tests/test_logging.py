"""The library's logger follows the library convention (a NullHandler, records propagate to the
application's handlers); the ``advrec`` command prints the reports on stderr (issue 15)."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import advrec
from advrec import _logging


def test_the_library_attaches_only_a_null_handler_in_a_fresh_process(tmp_path):
    code = ("import logging, advrec; lg = logging.getLogger('advrec'); "
            "print([type(h).__name__ for h in lg.handlers], lg.propagate, lg.level)")
    package_root = Path(advrec.__file__).resolve().parents[1]  # the advrec these tests import
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env).stdout
    assert out.strip() == "['NullHandler'] True 0"


def test_an_application_routes_the_reports_through_its_own_handlers():
    logger = logging.getLogger("advrec")
    saved = (logger.propagate, logger.level, list(logger.handlers))
    for h in list(logger.handlers):  # as in a fresh process: the command's handler off
        if h.get_name() == "advrec-cli":
            logger.removeHandler(h)
    logger.propagate, logger.level = True, logging.NOTSET
    root, buf = logging.getLogger(), io.StringIO()
    handler = logging.StreamHandler(buf)
    root.addHandler(handler)
    root_level = root.level
    root.setLevel(logging.INFO)
    try:
        _logging.report("12 rows removed")
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        logger.propagate, logger.level = saved[0], saved[1]
        for h in saved[2]:
            if h not in logger.handlers:
                logger.addHandler(h)
    assert buf.getvalue() == "12 rows removed\n"


def test_show_reports_prints_once_on_the_current_stderr(capsys):
    logger = logging.getLogger("advrec")
    saved = (logger.propagate, logger.level)
    try:
        _logging.show_reports()
        _logging.show_reports()  # idempotent: one handler
        _logging.report("data from the cache")
        assert capsys.readouterr().err == "advrec: data from the cache\n"
        assert sum(h.get_name() == "advrec-cli" for h in logger.handlers) == 1
    finally:
        for h in list(logger.handlers):
            if h.get_name() == "advrec-cli":
                logger.removeHandler(h)
        logger.propagate, logger.level = saved


def test_a_fact_told_word_for_word_again_is_reported_once(caplog):
    """Issue 15: the demo printed where ML-100K came from once per part, and the sampled
    protocol's short-candidates note once per evaluation; ``once=True`` tells such a fact once."""
    with caplog.at_level(logging.INFO, logger="advrec"):
        for _ in range(3):
            _logging.report("test fact A, told once", once=True)
            _logging.report("test fact B, told each time")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("test fact A, told once") == 1
    assert messages.count("test fact B, told each time") == 3


def test_loading_a_dataset_three_times_names_its_source_once(tmp_path):
    code = ("import advrec.data as D\nfrom advrec._logging import show_reports\nshow_reports()\n"
            "for _ in range(3):\n    D.load('ml-100k')\n")
    package_root = Path(advrec.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("advrec: ml-100k:")]
    assert len(lines) == 1, res.stderr


def test_cli_log_file_appends_the_reports_with_timestamps(tmp_path, capsys):
    from advrec.cli import main

    log = tmp_path / "advrec.log"
    log.write_text("earlier line\n")
    _logging._reported_once.clear()      # the data source is reported once per process
    assert main(["run", "poison", "--quick", "--no-progress", "--log-file", str(log)]) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"                       # appended, not overwritten
    assert any("INFO advrec: ml-100k: " in line for line in lines[1:])
    assert all(line[:4].isdigit() for line in lines[1:])     # each message timestamped
    import logging
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("advrec").handlers)


def test_cli_log_file_is_checked_before_any_work(tmp_path, capsys):
    from advrec.cli import main

    assert main(["info", "--log-file", str(tmp_path)]) == 2
    assert "--log-file" in capsys.readouterr().err
    assert main(["run", "gan", "--quick", "--log-file", str(tmp_path / "missing" / "x.log")]) == 2
    assert "not a writable directory" in capsys.readouterr().err
