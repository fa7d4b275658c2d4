"""The README's code runs as written (issue 15): every ```python block executes, with the
trainers' epoch budgets capped at two so the whole file takes about a minute, and every
``advrec ...`` command the README shows is accepted by the command's parser.

The blocks run in one namespace in the order the README's own comments give ("as in 'Using the
library' below"): that section first, then the others top to bottom.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import advrec
from advrec.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
if not (README.parent / "pyproject.toml").is_file():  # the README is read at collection: skip here
    pytest.skip(f"reads the source checkout's README.md; {README.parent} is not a checkout",
                allow_module_level=True)
FIRST = "Using the library"

#: run before the blocks: trainers keep at most two epochs (only the budget changes, so every
#: line of the README still runs; two because early stopping needs a validated epoch to keep)
CAP_EPOCHS = """
import advrec.training as _t
def _cap(cls, attr="epochs", most=2):
    init = cls.__init__
    def capped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        setattr(self, attr, min(getattr(self, attr), most))
    cls.__init__ = capped
for _cls in (_t.Trainer, _t.SequenceTrainer, _t.ClassifierTrainer):
    _cap(_cls)
"""


def python_blocks() -> list[tuple[str, str]]:
    """(section heading, code) of every ```python block, the "Using the library" one first."""
    blocks, section = [], ""
    for part in re.split(r"^(## .*)$", README.read_text(), flags=re.M):
        if part.startswith("## "):
            section = part[3:].strip()
            continue
        blocks += [(section, code) for code in re.findall(r"```python\n(.*?)```", part, flags=re.S)]
    return sorted(blocks, key=lambda b: b[0] != FIRST)


def test_the_readme_has_the_blocks_this_test_expects():
    sections = [s for s, _ in python_blocks()]
    assert sections[0] == FIRST and len(sections) >= 5, sections


def test_every_python_block_runs(tmp_path):
    from advrec.data.content import content_extra_available

    script = [CAP_EPOCHS]
    for section, code in python_blocks():
        body = code.replace("...", "pass")   # the README's "loop body elided" marker
        if "ml100k_text_features" in body and not content_extra_available():
            script.append(f"print('skipped: {section} (needs the content extra)')")
            continue
        script += [f"print('block: {section}', flush=True)", body]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(advrec.__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    ran = [line for line in res.stdout.splitlines() if line.startswith(("block:", "skipped:"))]
    assert len(ran) == len(python_blocks()), res.stdout


def readme_commands() -> list[str]:
    """Every ``advrec ...`` command line the README shows, in code spans or bash blocks."""
    text = README.read_text()
    spans = re.findall(r"`advrec ([^`]+)`", text)
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        spans += [m.split("&&")[0].strip() for m in re.findall(r"\badvrec (.+)", block)]
    return sorted(set(spans))


def test_the_readme_shows_advrec_commands():
    assert {"demo", "certify", "info"} <= {c.split()[0] for c in readme_commands()}


@pytest.mark.parametrize("command", readme_commands())
def test_every_advrec_command_in_the_readme_parses(command, capsys):
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command))
    except SystemExit as stop:
        pytest.fail(f"`advrec {command}` is refused by the parser: {capsys.readouterr().err.strip()}"
                    f" (exit {stop.code})")
    assert callable(args.func), command

