"""``make_regularizer`` builds by name from ``proxgt.registry.REGULARIZERS``: PARAMS / REQUIRED / from_settings."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch

import proxgt.prox._factory as factory_mod
from proxgt._validation import ProxGTValueError
from proxgt.errors import UnknownNameError
from proxgt.prox import (
    L1,
    REGULARIZER_ALIASES,
    REGULARIZER_NAMES,
    Box,
    ElasticNet,
    GroupLasso,
    L1Ball,
    L2Ball,
    L2Squared,
    NonNegative,
    NoReg,
    make_regularizer,
)
from proxgt.prox._constraints import Support
from proxgt.registry import REGULARIZERS, Registry

CLASSES = {
    "none": NoReg,
    "l1": L1,
    "l2sq": L2Squared,
    "elastic_net": ElasticNet,
    "group_lasso": GroupLasso,
    "nonneg": NonNegative,
    "box": Box,
    "l2_ball": L2Ball,
    "l1_ball": L1Ball,
    "support": Support,
}


def test_all_ten_are_registered_in_order_with_aliases() -> None:
    assert REGULARIZER_NAMES == tuple(CLASSES)
    assert tuple(REGULARIZERS.names()[: len(CLASSES)]) == tuple(CLASSES)
    assert REGULARIZER_ALIASES == {"l2": "l2sq", "elasticnet": "elastic_net", "nonnegative": "nonneg"}
    for name, cls in CLASSES.items():
        assert REGULARIZERS.get(name) is cls and cls.name == name
        assert REGULARIZERS.summary(name)


@pytest.mark.parametrize("name", list(CLASSES))
def test_each_class_declares_params_required_and_from_settings(name: str) -> None:
    cls = CLASSES[name]
    assert isinstance(cls.PARAMS, tuple) and all(isinstance(p, str) for p in cls.PARAMS)
    assert isinstance(cls.REQUIRED, tuple) and set(cls.REQUIRED) <= set(cls.PARAMS)
    assert list(inspect.signature(cls.from_settings).parameters)[:1] == ["strength"]
    # PARAMS and REQUIRED are class attributes, not dataclass fields
    assert not {"PARAMS", "REQUIRED"} & {f.name for f in dataclasses.fields(cls)}


def test_declared_params() -> None:
    assert L1.PARAMS == L2Squared.PARAMS == ("mask",)
    assert ElasticNet.PARAMS == ("l1_ratio", "mask")
    assert GroupLasso.PARAMS == ("groups", "group_size", "weights") and GroupLasso.REQUIRED == ()
    assert Box.REQUIRED == ("lower", "upper")
    assert L2Ball.REQUIRED == L1Ball.REQUIRED == ("radius",)
    assert NoReg.PARAMS == NonNegative.PARAMS == ()


def test_from_settings_builds_and_constraints_ignore_strength() -> None:
    assert L1.from_settings(0.5) == L1(0.5)
    assert ElasticNet.from_settings(0.5, l1_ratio=0.1) == ElasticNet(0.5, l1_ratio=0.1)
    assert GroupLasso.from_settings(0.5, group_size=2) == GroupLasso(0.5, group_size=2)
    assert Box.from_settings(123.0, lower=-1.0, upper=1.0) == Box(-1.0, 1.0)
    assert L2Ball.from_settings(7.0, radius=2.0) == L2Ball(2.0)
    assert NonNegative.from_settings(3.0) == NonNegative() and NoReg.from_settings(3.0) == NoReg()


@pytest.mark.parametrize("name", ["L1", " l1 ", "ELASTIC-NET", "Elastic_Net", "elasticnet", "L2", "NonNegative",
                                  "nonnegative", "L2-Ball", "group-lasso"])
def test_names_case_insensitive_dash_as_underscore(name: str) -> None:
    params = {"l2-ball": {"radius": 1.0}, "group-lasso": {"group_size": 2}}.get(name.lower(), {})
    assert make_regularizer(name, 0.1, **params).name in REGULARIZER_NAMES


@pytest.mark.parametrize("bad", ["lasso", "", 3, None])
def test_unknown_name_message(bad: Any) -> None:
    with pytest.raises(UnknownNameError) as info:
        make_regularizer(bad, 0.1)
    msg = str(info.value)
    assert isinstance(info.value, ProxGTValueError)
    assert msg == (
        f"unknown regularizer {bad!r}; choose one of: none, l1, l2sq, elastic_net, group_lasso, nonneg, box, "
        "l2_ball, l1_ball, support (aliases: l2, elasticnet, nonnegative)"
    )
    assert "make_regularizer" not in msg and "parameter of" not in msg


@dataclass(frozen=True)
class _Scaled:
    """A user regularizer h(x) = (lam * factor) * ||x||_1 with one required and one optional parameter."""

    lam: float
    factor: float
    shift: float = 0.0
    name: ClassVar[str] = "scaled"
    PARAMS: ClassVar[tuple[str, ...]] = ("factor", "shift")
    REQUIRED: ClassVar[tuple[str, ...]] = ("factor",)

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> _Scaled:
        return cls(strength, **params)

    def value(self, X: torch.Tensor) -> torch.Tensor:
        return self.lam * self.factor * X.abs().sum(1)

    def prox(self, X: torch.Tensor, step: float) -> torch.Tensor:
        t = step * self.lam * self.factor
        return X - X.clamp(-t, t)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.lam, "factor": self.factor, "shift": self.shift}


def test_checks_are_generic_over_params_and_required(monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry = Registry("regularizer", "reg")
    reg.register("scaled", _Scaled, aliases=("scaled-l1",))
    reg.register("l1", L1)
    monkeypatch.setattr(factory_mod, "REGULARIZERS", reg)
    assert make_regularizer("Scaled-L1", 0.5, factor=2.0) == _Scaled(0.5, 2.0)
    assert make_regularizer("scaled", 0.5, factor=2.0, shift=1.0).shift == 1.0
    with pytest.raises(ProxGTValueError, match=r"^Regularizer 'scaled' needs the parameter\(s\) 'factor'\.$"):
        make_regularizer("scaled", 0.5)
    with pytest.raises(ProxGTValueError, match=r"^Unknown parameter\(s\) 'mask' for regularizer 'scaled'; "
                                               r"accepted: factor, shift\.$"):
        make_regularizer("scaled", 0.5, factor=1.0, mask=None)
    with pytest.raises(UnknownNameError, match=r"^unknown regularizer 'box'; choose one of: scaled, l1 "
                                               r"\(aliases: scaled-l1\)$"):
        make_regularizer("box")
    reg2: Registry = Registry("regularizer", "reg")
    reg2.register("only", NoReg)
    monkeypatch.setattr(factory_mod, "REGULARIZERS", reg2)
    with pytest.raises(UnknownNameError, match=r"^unknown regularizer 'x'; choose one of: only$"):
        make_regularizer("x")


def test_describe_round_trip_through_the_registry() -> None:
    for reg in (L1(0.1), ElasticNet(0.2, l1_ratio=0.3), GroupLasso(0.1, group_size=3),
                GroupLasso(0.1, groups=[0, 0, 1], weights=[1.0, 2.0]), Box(-1.0, 2.0), L2Ball(1.5),
                L1Ball(0.5), NonNegative(), NoReg()):
        assert make_regularizer(**reg.describe()) == reg
