"""The one base of the errors a caller's input causes, and the parameter each came through."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used. ``param`` names the library parameter it came through (``coverage``,
    ``prior``, ``split``, ``data``...), and then the message starts with that name, so that each front end says
    it in its own words: the command line as its flag (``--coverage``), the server as its field."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param

    def __reduce__(self):  # keep ``param`` across processes (Dask workers, torchrun ranks)
        return _rebuild, (type(self), str(self), self.param)

    def named(self, name: str) -> str:
        """The message with its leading parameter name replaced by ``name`` (e.g. a flag)."""
        text = str(self)
        if self.param and text.startswith(self.param):
            return name + text[len(self.param) :]
        return text


def install_hint(extra: str) -> str:
    """How to install one of nameorigin's extras, in the form that works from a clone of the repository (the
    package is not on PyPI): ``pip install -c constraints.txt -e ".[cluster]"``."""
    return f'pip install -c constraints.txt -e ".[{extra}]" (the {extra} extra, from the repository root)'


def check_whole(value, param: str, *, least: int = 1) -> None:
    """:class:`InputError` naming ``param`` unless ``value`` is a whole number (not a bool) of at least
    ``least``: the library's form of the command line's ranges (``top``, ``epochs``, ``threads``)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputError(f"{param}: expected a whole number of at least {least}, got {value!r}", param=param)


def _rebuild(cls: type[InputError], message: str, param: str | None) -> InputError:
    error = cls(message)
    error.param = param
    return error
