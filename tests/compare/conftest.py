"""The shared checks of :mod:`tests.compare.helpers` report their failures as test asserts do."""

import pytest

pytest.register_assert_rewrite("tests.compare.helpers")
