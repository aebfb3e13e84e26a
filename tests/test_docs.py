"""The documents users read stay true to the code."""
import re
from pathlib import Path

from models import errors

ROOT = Path(__file__).resolve().parent.parent


def test_error_table_lists_every_code_of_the_catalog():
    table = {(int(code), int(status), name) for code, status, name in
             re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \|", (ROOT / "docs/ERRORS.md").read_text(), re.M)}
    catalog = {(cls.code, cls.status, cls.__name__) for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.ApiError)}
    assert table == catalog


def test_codes_are_unique():
    codes = [cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ApiError)]
    assert len(codes) == len(set(codes))
