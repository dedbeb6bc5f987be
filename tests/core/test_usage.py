"""One-line errors: only argument problems say "cannot parse the arguments"."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from airavata_magic.errors import InvalidArgument
from airavata_magic.usage import parse, user_errors


@magic_arguments()
@argument("name")
def _magic(line: str) -> None:
    """A magic with one argument."""


def test_an_unparsable_argument_line_says_so():
    with pytest.raises(UsageError, match="cannot parse the arguments"):
        parse(_magic, "'unbalanced")


def test_a_package_error_is_one_line_with_control_characters_escaped():
    @user_errors
    def f():
        raise InvalidArgument("bad name 'a\nb': use letters")

    with pytest.raises(UsageError) as e:
        f()
    assert "\n" not in str(e.value) and "a\\nb" in str(e.value)


def test_a_value_error_from_below_is_not_called_an_argument_problem():
    """E.g. a kernel message with a bad HMAC signature: a fault to see, not "cannot parse the arguments"."""
    @user_errors
    def f():
        raise ValueError("a kernel message with a bad signature (wrong key?)")

    with pytest.raises(ValueError, match="bad signature"):
        f()
