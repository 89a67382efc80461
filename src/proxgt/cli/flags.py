"""Command-line flags generated from the settings table (:mod:`proxgt.settings.table`): one flag per setting,
grouped by section, with what it accepts and its default in ``--help``. Importing this module imports no torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxgt.errors import ProxGTValueError
from proxgt.settings import SECTIONS, SETTINGS, RunConfig, Setting, load_config_file
from proxgt.settings.constraints import Bool, Choice, Either, Float, Int, Registered

__all__ = ["add_setting_flags", "config_from_args", "parse_extra", "resume_overrides", "setting_argv", "number_or"]


def number_or(word: str, cast: type = float, what: str = "a number") -> Any:
    """An argparse type accepting ``word`` or a number converted by ``cast`` (e.g. ``--sample-time measure``)."""

    def parse(text: str) -> Any:
        if text == word:
            return text
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or {word!r}, got {text!r}") from None

    return parse


def _arg_type(s: Setting) -> Any:
    def parse(text: str) -> Any:
        try:
            return s.constraint.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None

    parse.__name__ = s.name  # argparse names the type in some messages
    return parse


def _metavar(s: Setting) -> str:
    c = s.constraint
    if s.metavar:
        return s.metavar
    if isinstance(c, Either):
        return f"{_metavar_of(c.other)}|{c.word}"
    return _metavar_of(c)


def _metavar_of(c: Any) -> str:
    if isinstance(c, Int):
        return "N"
    if isinstance(c, Float):
        return "X"
    if isinstance(c, Bool):
        return "true|false"
    return "NAME"


def _help(s: Setting) -> str:
    text = s.help
    if isinstance(s.constraint, Registered | Choice | Bool):
        text += f" ({s.constraint.describe()})"
    if s.default is not None:
        text += f" [default: {s.default}]"
    return text.replace("%", "%%")


def add_setting_flags(p: argparse.ArgumentParser, *, with_out: bool = True) -> None:
    """``-c/--config FILE`` plus one flag per setting, in one argument group per section."""
    p.add_argument("-c", "--config", metavar="FILE", help="TOML file with settings (flags override it)")
    for section, what in SECTIONS.items():
        group = p.add_argument_group(f"[{section}] settings", what)
        for s in SETTINGS:
            if s.section != section or (s.name == "out" and not with_out):
                continue
            # a true/false setting also works as a bare switch (--async means --async true)
            switch: dict[str, Any] = {"nargs": "?", "const": True} if isinstance(s.constraint, Bool) else {}
            group.add_argument(s.cli_flag, dest=s.name, type=_arg_type(s), default=None,
                               metavar=_metavar(s), help=_help(s), **switch)
    p.add_argument("--extra", action="append", default=None, metavar="METHOD.KEY=VALUE",
                   help="a method-specific setting, e.g. deepstorm.beta=0.1 (TOML: [extra.deepstorm] beta = 0.1); "
                        "repeatable; VALUE is read as TOML (numbers, true/false, \"strings\" or bare words)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_extra(items: list[str] | None) -> dict[str, Any]:
    """``["deepstorm.beta=0.1", ...]`` -> ``{"deepstorm": {"beta": 0.1}}`` (values read as TOML)."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not eq or not dot or not method or not name:
            raise ProxGTValueError(f"--extra expects METHOD.KEY=VALUE, e.g. deepstorm.beta=0.1. Got {item!r} instead.")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word, e.g. schedule=diminishing
        out.setdefault(method, {})[name] = value
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The config file (if any) with the flags given on top."""
    base: dict[str, Any] = load_config_file(args.config) if getattr(args, "config", None) else {}
    cfg = RunConfig.from_dict(base, source=args.config or "config")
    cfg = cfg.merged({s.name: getattr(args, s.name, None) for s in SETTINGS})
    extra = parse_extra(getattr(args, "extra", None))
    _check_flags_apply(args, cfg, extra)
    if extra:
        merged = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.extra.items()}
        for method, values in extra.items():
            merged.setdefault(method, {}).update(values)
        cfg = cfg.replace(extra=merged)
    return cfg


def _check_flags_apply(args: argparse.Namespace, cfg: RunConfig, extra: dict[str, Any]) -> None:
    """Flags that would be silently ignored are one-line errors: ``--extra`` for a method this run does not run,
    ``--dp-delta`` and ``--dp-secure-noise`` without differential privacy (config files may carry either: a file
    shared by several runs)."""
    from proxgt.errors import UnknownNameError
    from proxgt.registry import extra_tables

    if extra:
        try:
            tables = extra_tables(cfg.algorithm)
        except (UnknownNameError, KeyError):  # the algorithm's own check names it
            tables = frozenset({cfg.algorithm})
        for method in extra:
            if method not in tables:
                raise ProxGTValueError(
                    f"--extra {method}.* sets a setting of {method}, but this run's algorithm is {cfg.algorithm} "
                    f"(which reads [extra.{'] or [extra.'.join(sorted(tables))}]): drop it or use --algorithm {method}"
                )
    for name, what in (("dp_delta", "is the delta of a differential privacy guarantee"),
                       ("dp_secure_noise", "chooses where differential privacy's noise comes from")):
        if getattr(args, name, None) is not None and (cfg.dp_clip is None or cfg.dp_epsilon == "off"):
            raise ProxGTValueError(f"--{name.replace('_', '-')} {what}; this run has no differential privacy "
                                   "(give --dp-clip C with --dp-noise or --dp-epsilon)")


def resume_overrides(args: argparse.Namespace, allowed: tuple[str, ...]) -> dict[str, Any]:
    """With ``--resume DIR``: the ``allowed`` settings given as flags; any other setting is a one-line error."""
    given = [s.cli_flag for s in SETTINGS if getattr(args, s.name, None) is not None and s.name not in allowed]
    if getattr(args, "extra", None):
        given.append("--extra")
    if getattr(args, "config", None):
        given.insert(0, "--config")
    if given:
        flags = " and ".join(s.cli_flag for s in SETTINGS if s.name in allowed)
        raise ProxGTValueError(
            f"--resume continues a run with the settings of its checkpoint; drop {', '.join(given)} "
            f"(only {flags} may change)"
        )
    return {name: getattr(args, name) for name in allowed if getattr(args, name, None) is not None}


def setting_argv(args: argparse.Namespace) -> list[str]:
    """The flags that reproduce the settings given in ``args`` (for starting worker processes)."""
    argv: list[str] = []
    if getattr(args, "config", None):
        argv += ["--config", str(args.config)]
    for s in SETTINGS:
        v = getattr(args, s.name, None)
        if v is not None:
            argv += [s.cli_flag, str(v).lower() if isinstance(v, bool) else str(v)]
    for item in getattr(args, "extra", None) or []:
        argv += ["--extra", item]
    return argv
