"""The README's examples work as written: every ```python block runs, and
the first commands it gives name files and options that exist."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import cli_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_has_python_examples():
    assert PYTHON_BLOCKS


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_block_runs(code, tmp_path):
    # In a fresh interpreter, from an empty folder: a block may use only
    # what it imports and what devicenet ships.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DEVICENET_MODEL", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    # the comments promise the bundled photo is an espresso
    if "sample_image" in code:
        assert "espresso" in done.stdout


def test_the_first_commands_work_on_a_fresh_checkout():
    from devicenet.cli import main
    block = re.search(r"From a checkout:\n\n```\n(.*?)```", README, re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.startswith("devicenet ")]
    assert commands and commands[0] == ["devicenet", "classify", "--demo"]
    r = cli_runner().invoke(main, commands[0][1:])
    assert r.exit_code == 0, r.output
    assert "espresso" in r.stdout


def test_extras_are_installed_from_the_checkout():
    # devicenet is not on the package index: `pip install devicenet[...]` fails.
    texts = [README] + [open(os.path.join(ROOT, "devicenet", *p)).read()
                        for p in (("cli.py",), ("backends", "__init__.py"))]
    for text in texts:
        assert not re.search(r"pip install ['\"]?devicenet\[", text)
    assert 'pip install -e ".[opencl]"' in README


def test_ci_installs_and_tests_as_the_readme_says():
    block = re.search(r"From a checkout:\n\n```\n(.*?)```", README, re.S).group(1)
    readme = [line.split("#")[0].strip() for line in block.splitlines()]
    readme = readme[readme.index('pip install -e ".[test]"'):]  # from the test install on
    readme = [line for line in readme if line.startswith(("pip ", "pytest"))]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    # the first virtual environment: the one the README describes
    first = ci.split(". .ci-venv/bin/activate\n", 1)[1].split("\ndeactivate\n", 1)[0]
    steps = [line.strip() for line in first.splitlines()
             if line.strip().startswith(("pip ", "pytest")) and "--upgrade pip" not in line]
    assert steps == readme == ['pip install -e ".[test]"', "pytest"]
    # the browser test's Chromium: installed by CI, named by the README
    assert "apt-get install -y -q chromium" in ci and "install chromium" in " ".join(README.split())
    # and the test extra brings what the tests of watch and serve need (PyAV), as the video extra does
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    extras = {k: v.split() for k, v in cfg["options.extras_require"].items()}
    assert "av>=10" in extras["test"] and "av>=10" in extras["video"]
