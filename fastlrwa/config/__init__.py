"""Typed configuration: one dataclass per concern, named presets as data."""
