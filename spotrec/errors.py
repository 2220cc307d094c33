"""Typed errors. Each message says what is wrong and what to do about it."""


class SpotrecError(Exception):
    """Base class: the CLI turns these into a one-line message and a non-zero exit."""


class ConfigError(SpotrecError):
    """The configuration file or an override is invalid."""


class ReaderFormatError(SpotrecError):
    """A file does not match the format of the reader it was given to."""

    def __init__(self, reader: str, path: str, line_no: int | None, detail: str) -> None:
        where = f"{path}:{line_no}" if line_no is not None else path
        super().__init__(f"{reader}: {where} is not in this reader's format: {detail}")
        self.reader = reader
        self.path = path
        self.line_no = line_no


class MissingTableError(SpotrecError):
    """A step needs a table that an earlier step has not written yet."""


class SchemaMismatchError(SpotrecError):
    """A DataFrame or stored table lacks columns or has the wrong types."""
