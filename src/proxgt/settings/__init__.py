"""Run settings: one table (:data:`SETTINGS`) grouped in sections that are also the TOML tables, and the
immutable :class:`RunConfig` generated from it. The table drives validation, the CLI flags and the docs'
settings reference."""

from proxgt.settings.config import RunConfig, flatten, load_config_file, read_toml
from proxgt.settings.table import BY_NAME, RESUMABLE, SECTIONS, SETTINGS, Setting, reference_markdown

__all__ = ["RunConfig", "Setting", "SETTINGS", "SECTIONS", "BY_NAME", "RESUMABLE", "flatten", "load_config_file",
           "read_toml", "reference_markdown"]
