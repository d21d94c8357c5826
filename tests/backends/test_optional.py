"""backends.optional.require: the one way a backend imports an optional library."""

from __future__ import annotations

import json

import pytest

from mrtui.backends.base import BackendError
from mrtui.backends.optional import require
from mrtui.backends.training import TrainingError


def test_require_gives_back_the_module_or_the_modules() -> None:
    assert require("json", what="x", hint="y") is json
    assert require("json", "pytest", what="x", hint="y") == (json, pytest)


def test_a_missing_module_names_the_feature_and_the_install_command() -> None:
    with pytest.raises(BackendError) as info:
        require("mrtui_no_such_module", what="the frobnicator", hint="pip install 'mrtui[frob]'")
    assert (
        str(info.value) == "the frobnicator needs mrtui_no_such_module: pip install 'mrtui[frob]'"
    )
    assert isinstance(info.value.__cause__, ImportError)


def test_of_several_modules_the_missing_one_is_named() -> None:
    with pytest.raises(TrainingError, match=r"^DPO training needs the training extra "
                       r"\(mrtui_no_such_module is missing\): pip install x$"):  # fmt: skip
        require(
            "json",
            "mrtui_no_such_module",
            what="DPO training",
            needs="the training extra",
            hint="pip install x",
            error=TrainingError,
        )
