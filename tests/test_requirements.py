"""Production installs requirements.txt only: no test tool in it, and the app runs without them."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_TOOLS = {"pytest", "schemathesis", "hypothesis", "ruff", "coverage", "mypy", "flake8", "tox", "locust"}


def lines(name: str) -> list[str]:
    """The file's requirement lines, without comments and blank lines."""
    text = (ROOT / name).read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def package(line: str) -> str:
    return re.split(r"[\s=<>!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-")


def test_production_requirements_hold_no_test_tool():
    names = {package(line) for line in lines("requirements.txt")}
    assert not {name for name in names if name in TEST_TOOLS or name.startswith("pytest-")}
    assert not [line for line in lines("requirements.txt") if line.startswith("-")]  # no include of another file


def test_test_requirements_are_production_plus_the_test_tools():
    test = lines("requirements-test.txt")
    assert test[0] == "-r requirements.txt"
    assert {"pytest", "schemathesis", "hypothesis"} <= {package(line) for line in test[1:]}


def test_the_app_and_gunicorn_conf_import_without_the_test_tools():
    # A module set to None in sys.modules cannot be imported, as if it were not installed.
    blocked = (f"import sys; sys.modules.update(dict.fromkeys({sorted(TEST_TOOLS)!r})); "
               "import app, runpy; runpy.run_path('gunicorn.conf.py')")
    result = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
