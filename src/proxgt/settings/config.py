""":class:`RunConfig`: the settings of one run, generated from the table in :mod:`proxgt.settings.table`.

A RunConfig is immutable. It is filled from a mapping (flat, ``{"nodes": 8}``, or by sections as in a TOML file,
``{"graph": {"nodes": 8}}``; a flat file or a ``[run]`` root table from earlier versions still loads), from
flags, or both. :meth:`RunConfig.validate` returns a checked, normalized copy and never changes the one it was
called on; values derived at build time (``auto`` step and rounds, estimator defaults, iterations from epochs)
go to the run's *resolved* config, written as ``config.toml`` with a ``[meta]`` table.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from proxgt._validation import setting_error
from proxgt.errors import ProxGTValueError
from proxgt.settings.table import BY_NAME, PATH_SETTINGS, SECTIONS, SETTINGS, SPEC_OR_PATH_SETTINGS

__all__ = ["RunConfig", "read_toml", "load_config_file", "flatten"]


def _unknown(key: str, source: str) -> ProxGTValueError:
    close = difflib.get_close_matches(key.rpartition(".")[2].replace("-", "_"), list(BY_NAME), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ProxGTValueError(
        f"unknown setting '{key}' in {source}{hint}; known settings: {', '.join(sorted(BY_NAME))}"
    )


def flatten(values: dict[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Flat ``{setting: value}`` (plus ``extra``) from a flat or sectioned mapping; ``meta`` is dropped.

    A table named after a section holds that section's settings; ``[run]`` may also hold any setting, as the
    root table of earlier versions' files did. Unknown keys are a one-line error naming the source.
    """
    flat: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, val in values.items():
        if key == "meta":
            continue
        if key == "extra":
            extra.update(val or {})
            continue
        if key in SECTIONS and isinstance(val, dict):
            for sub, v in val.items():
                name = sub.replace("-", "_")
                if name == "extra" and key == "run":  # the extra table of a legacy [run] root
                    extra.update(v or {})
                    continue
                if name not in BY_NAME:
                    raise _unknown(f"{key}.{sub}", source)
                home = BY_NAME[name].section
                if home != key and key != "run":
                    raise ProxGTValueError(f"setting '{name}' in {source} belongs in [{home}], not in [{key}]")
                flat[name] = v
            continue
        name = key.replace("-", "_")
        if name not in BY_NAME:
            raise _unknown(key, source)
        flat[name] = val
    if extra:
        flat["extra"] = extra
    return flat


if TYPE_CHECKING:
    class _Settings(type):
        def __getattr__(cls, name: str) -> Any:  # RunConfig.<setting>: the setting's default
            ...
else:
    _Settings = type


class RunConfig(metaclass=_Settings):
    """Everything that defines a run, one field per row of :data:`proxgt.settings.SETTINGS` (plus ``extra``,
    method-specific tables such as ``extra['deepstorm'] = {'beta': 0.1}``). Immutable: use :meth:`replace`.

    A frozen dataclass whose fields are added from the table when this module loads; on the class, a setting's
    name gives its default (``RunConfig.nodes``)."""

    if TYPE_CHECKING:
        # What the type checker sees of the fields added from the table: each is typed Any there.
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
        extra: dict[str, Any]

        def __init__(self, **values: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def field_names(cls) -> list[str]:
        return [s.name for s in SETTINGS]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a flat or sectioned mapping; keys may use '-' or '_'."""
        return cls(**flatten(values, source=source))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (this one is immutable)."""
        for key in changes:
            if key not in BY_NAME and key != "extra":
                raise _unknown(key, "replace()")
        return dataclasses.replace(self, **changes)

    def merged(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with the given values replaced; None values (flags not given) are ignored."""
        return self.replace(**{k.replace("-", "_"): v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{setting: value}``; ``extra`` only when non-empty."""
        d = {s.name: getattr(self, s.name) for s in SETTINGS}
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    def to_toml_dict(self, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Sectioned ``{section: {setting: value}}`` for a TOML file; unset (None) values are left out."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            v = getattr(self, s.name)
            if v is None or s.name in skip:
                continue
            out.setdefault(s.section, {})[s.name] = v
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def section(self, name: str) -> dict[str, Any]:
        """The settings of one section, e.g. ``cfg.section("graph")``."""
        if name not in SECTIONS:
            raise ProxGTValueError(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")
        return {s.name: getattr(self, s.name) for s in SETTINGS if s.section == name}

    def validate(self) -> RunConfig:
        """A checked, normalized copy (``3.0`` -> ``3`` for int settings); raises a one-line ProxGTValueError on
        the first bad setting. This object is not changed."""
        values = {s.name: s.check(getattr(self, s.name)) for s in SETTINGS}
        extra = self.extra
        if not isinstance(extra, dict):
            raise setting_error("extra", "a table, e.g. [extra.deepstorm] beta = 0.1", extra)
        device = values["device"]
        if not (device == "cpu" or device.startswith("cuda")):
            raise setting_error("device", "'cpu' or 'cuda[:i]'", device)
        if values["weights_file"] is not None and values["weights"] not in ("user", "metropolis"):
            raise ProxGTValueError(
                f"weights_file (--weights-file) gives the mixing matrix; it cannot be combined with "
                f"weights = {values['weights']!r} (leave weights unset or set it to 'user')"
            )
        if values["weights"] == "user" and values["weights_file"] is None:
            raise ProxGTValueError("weights = 'user' needs the matrix: set weights_file (--weights-file PATH)")
        if device.startswith("cuda"):
            _check_cuda(device)
        return type(self)(**values, extra=dict(extra))

    def with_absolute_paths(self) -> RunConfig:
        """A copy whose file settings are absolute paths, so a config.toml works from any folder."""
        changes: dict[str, Any] = {}
        for name in PATH_SETTINGS:
            v = getattr(self, name)
            if v is not None:
                changes[name] = str(Path(v).expanduser().resolve())
        for name in SPEC_OR_PATH_SETTINGS:
            v = getattr(self, name)
            if isinstance(v, str) and Path(v).expanduser().is_file():
                changes[name] = str(Path(v).expanduser().resolve())
        import proxgt.registry as registry

        data = self.data
        if data not in registry.DATASETS and Path(data).expanduser().exists():
            changes["data"] = str(Path(data).expanduser().resolve())
        return self.replace(**changes)


def _check_cuda(device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ProxGTValueError(
            f"device {device!r} requested but no CUDA GPU is available here (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --device cpu"
        )
    try:
        index = torch.device(device).index
    except RuntimeError:
        raise setting_error("device", "'cpu' or 'cuda[:i]'", device) from None
    if index is not None and index >= torch.cuda.device_count():
        raise ProxGTValueError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")


def _add_fields(cls: type[RunConfig]) -> None:
    """Make ``cls`` the frozen dataclass of the settings table: one field per setting (typed Any, the setting in
    its metadata), then ``extra``."""
    cls.__annotations__ = {s.name: Any for s in SETTINGS} | {"extra": dict[str, Any]}
    for s in SETTINGS:
        setattr(cls, s.name, field(default=s.default, metadata={"setting": s}))
    cls.extra = field(default_factory=dict)  # dataclass() turns it into the field
    dataclass(frozen=True)(cls)


_add_fields(RunConfig)


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing, empty or invalid file is a one-line ProxGTValueError."""
    import tomllib

    p = Path(path)
    if not p.exists():
        raise ProxGTValueError(f"{what} not found: {p}")
    if p.is_dir():
        raise ProxGTValueError(f"{what} {p} is a folder, not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ProxGTValueError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ProxGTValueError(f"{what} {p} is empty")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProxGTValueError(f"{p}: not a text file (a {what} is TOML)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProxGTValueError(f"{p}: invalid TOML: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file into a flat mapping (sections and a legacy ``[run]`` root handled); a ``[meta]``
    table, as a run's config.toml has, is kept under ``"meta"`` (RunConfig.from_dict ignores it)."""
    data = read_toml(path)
    flat = flatten(data, source=str(path))
    if isinstance(data.get("meta"), dict):
        flat["meta"] = data["meta"]
    return flat
