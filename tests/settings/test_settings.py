"""The settings table: TOML sections, validation that never mutates, flags and docs/settings.md from it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from proxgt.cli.flags import add_setting_flags, config_from_args
from proxgt.errors import ProxGTValueError
from proxgt.settings import SECTIONS, SETTINGS, RunConfig, load_config_file, reference_markdown

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_has_a_known_section_a_flag_and_help():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    flags = [s.cli_flag for s in SETTINGS]
    assert len(flags) == len(set(flags))
    for s in SETTINGS:
        assert s.section in SECTIONS and s.help and s.cli_flag.startswith("--")
        if s.default is not None:
            assert s.check(s.default) == s.default, s.name  # every default passes its own constraint


def test_sectioned_flat_and_legacy_run_root_load_the_same(tmp_path):
    sectioned = tmp_path / "a.toml"
    sectioned.write_text('[graph]\nnodes = 8\ntopology = "grid"\n[run]\niters = 30\n[extra.deepstorm]\nbeta = 0.2\n')
    flat = tmp_path / "b.toml"
    flat.write_text('nodes = 8\ntopology = "grid"\niters = 30\n[extra.deepstorm]\nbeta = 0.2\n')
    legacy = tmp_path / "c.toml"
    legacy.write_text('[run]\nnodes = 8\ntopology = "grid"\niters = 30\n[run.extra.deepstorm]\nbeta = 0.2\n')
    cfgs = [RunConfig.from_dict(load_config_file(p)) for p in (sectioned, flat, legacy)]
    assert cfgs[0] == cfgs[1] == cfgs[2]
    assert cfgs[0].nodes == 8 and cfgs[0].extra == {"deepstorm": {"beta": 0.2}}


def test_a_setting_in_the_wrong_table_or_misspelt_is_named(tmp_path):
    with pytest.raises(ProxGTValueError, match=r"'nodes' .* belongs in \[graph\], not in \[data\]"):
        RunConfig.from_dict({"data": {"nodes": 3}})
    with pytest.raises(ProxGTValueError, match="unknown setting 'nodse' in config \\(did you mean 'nodes'\\?\\)"):
        RunConfig.from_dict({"nodse": 3})


def test_validate_returns_a_normalized_copy_and_never_mutates():
    cfg = RunConfig(nodes=8.0, iters=12.0, topology="cycle", reg="L1")
    before = cfg.to_dict()
    ok = cfg.validate()
    assert cfg.to_dict() == before  # what the user gave is unchanged
    assert ok.nodes == 8 and isinstance(ok.nodes, int) and ok.topology == "ring" and ok.reg == "l1"
    with pytest.raises(AttributeError):
        cfg.nodes = 3  # immutable: use replace()
    assert cfg.replace(nodes=3).nodes == 3 and cfg.nodes == 8.0


@pytest.mark.parametrize("changes, message", [
    ({"nodes": 0}, "The 'nodes' setting must be an int >= 1. Got 0 instead."),
    ({"test_fraction": 1.0}, "The 'test_fraction' setting must be a number in [0, 1). Got 1.0 instead."),
    ({"rounds": "many"}, "The 'rounds' setting must be an int >= 1 or 'auto'. Got 'many' instead."),
    ({"batch": 0}, "The 'batch' setting must be an int >= 1 or 'full'. Got 0 instead."),
    ({"mixing": "telepathy"}, "The 'mixing' setting must be one of auto, plain, chebyshev, fastmix."),
    ({"algorithm": "sgd-magic"}, "unknown algorithm 'sgd-magic'; choose one of: proxgt-sa"),
    ({"reg_bias": "yes"}, "The 'reg_bias' setting must be true or false."),
    ({"weights": "user"}, "weights = 'user' needs the matrix: set weights_file (--weights-file PATH)"),
    ({"init": "/nonexistent/x0.npz"}, "The 'init' setting names a file that does not exist"),
])
def test_validation_messages_are_one_line_and_name_the_setting(changes, message):
    with pytest.raises(ProxGTValueError) as info:
        RunConfig(**changes).validate()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_flags_come_from_the_table_and_override_the_file(tmp_path):
    p = argparse.ArgumentParser()
    add_setting_flags(p)
    file = tmp_path / "x.toml"
    file.write_text("[graph]\nnodes = 5\n[algorithm]\nstep = 0.5\n")
    args = p.parse_args(["-c", str(file), "--nodes", "7", "--rounds", "auto", "--batch", "full", "--reg-bias", "on"])
    cfg = config_from_args(args)
    assert (cfg.nodes, cfg.step, cfg.rounds, cfg.batch, cfg.reg_bias) == (7, 0.5, "auto", "full", True)
    every_flag = {a.option_strings[-1] for a in p._actions if a.option_strings}
    assert {s.cli_flag for s in SETTINGS} <= every_flag


def test_settings_page_reference_is_the_generated_one():
    text = SETTINGS_PAGE.read_text()
    m = re.search(r"<!-- settings-reference:start -->\n(.*?)<!-- settings-reference:end -->", text, re.S)
    assert m, "docs/settings.md has no settings reference block"
    assert m.group(1).strip() == reference_markdown().strip(), (
        "docs/settings.md's settings reference is out of date: regenerate it with "
        "python -c 'from proxgt.settings import reference_markdown; print(reference_markdown())'"
    )


def test_method_settings_from_the_command_line(tmp_path):
    p = argparse.ArgumentParser()
    add_setting_flags(p)
    file = tmp_path / "x.toml"
    file.write_text("[extra.deepstorm]\nbeta = 0.3\nt0 = 5.0\n")
    args = p.parse_args(["-c", str(file), "--algorithm", "deepstorm", "--extra", "deepstorm.beta=0.1",
                         "--extra", "deepstorm.schedule=diminishing", "--extra", 'deepstorm.dual="0.5"'])
    cfg = config_from_args(args)
    assert cfg.extra == {"deepstorm": {"beta": 0.1, "t0": 5.0, "schedule": "diminishing", "dual": "0.5"}}
    # a flag for a method the run does not run would be ignored: refused (a config file may hold several)
    with pytest.raises(ProxGTValueError, match="this run's algorithm is deepstorm"):
        config_from_args(p.parse_args(["-c", str(file), "--algorithm", "deepstorm", "--extra", "sppdm.dual=0.5"]))
    with pytest.raises(ProxGTValueError, match="--extra expects METHOD.KEY=VALUE"):
        config_from_args(p.parse_args(["--extra", "beta=0.1"]))


def test_choice_lists_match_the_library():
    """The table lists some choices itself (to keep --help free of torch); they must be the library's."""
    from proxgt.algorithms import ORDERS
    from proxgt.data import SPLIT_SCHEMES
    from proxgt.mixing import MIXING_KINDS
    from proxgt.problems.nn import ACTIVATIONS, GRAD_MODES
    from proxgt.settings import BY_NAME
    from proxgt.topology import WEIGHT_RULES

    for name, library in (("split", SPLIT_SCHEMES), ("mixing", ("auto", *MIXING_KINDS)), ("order", ORDERS),
                          ("weights", WEIGHT_RULES), ("activation", ACTIVATIONS), ("nn_grad", GRAD_MODES)):
        assert tuple(BY_NAME[name].constraint.choices()) == tuple(library), name
