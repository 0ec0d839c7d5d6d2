"""Command-line options made from the config dataclasses: one source for every setting.

A setting's default and help live in its dataclass (``setting(default, help)`` puts the help in
the field's metadata).  ``add_options`` makes argparse options of chosen fields, with the
dataclass's defaults (or a preset's: a named config such as ``DAGGER_LABELS``) and help;
``config_from`` reads them back into the dataclass.  So the CLI never restates a default, and
``--help`` shows the one that applies.  (Written here rather than taken from tyro or
simple-parsing: the CLI's flag names predate it and are kept, and each command shows only some
fields of several dataclasses.)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING


def setting(default=MISSING, help: str = "", *, choices: tuple | None = None, factory=MISSING):
    """A dataclass field with its command-line help (and choices) in its metadata."""
    metadata = {"help": help, "choices": choices}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def add_options(parser: argparse.ArgumentParser, cls, flags: dict[str, str], *, preset=None,
                help_prefix: str = "", group: str = "", presets: dict | None = None) -> None:
    """Add an option per field of cls named in flags (field -> flag; a flag starting with "!"
    is a boolean's negation: "!--search-cold" sets warm_start False), its default from preset
    (an instance of cls; default: cls()), its help from the field's metadata; group names this
    set of options where one command has two of the same class (round 0's SFT and the retrains').

    presets (name -> an instance of cls): the options leave out what is not given (argparse's
    SUPPRESS), so that config_from takes those fields from the preset the command chose; the help
    then shows each preset's value."""
    fields, hints, base = _fields(cls), typing.get_type_hints(cls), preset if preset is not None else cls()
    for name, flag in flags.items():
        f, default = fields[name], getattr(base, name)
        meta_help, choices = f.metadata.get("help", ""), f.metadata.get("choices")
        text = help_prefix + meta_help
        if presets:
            values = "; ".join(f"{p}: {getattr(v, name)}" for p, v in presets.items())
            text, default = f"{text} (default: the preset's; {values})", argparse.SUPPRESS
        dest, kind = _dest(cls, name, group), hints[name]
        metavar = flag.lstrip("!-").upper().replace("-", "_")
        if flag.startswith("!"):
            parser.add_argument(flag[1:], dest=dest, action="store_false", default=default,
                                help=f"{help_prefix}{name} = False ({cls.__name__}.{name}: {meta_help})")
        elif kind is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, dest=dest, type=item, nargs="*", metavar=metavar, help=text,
                                default=default if default is argparse.SUPPRESS else list(default))
        else:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            parser.add_argument(flag, dest=dest, type=args[0] if args else kind, default=default, choices=choices,
                                metavar=None if choices else metavar, help=text)


def _dest(cls, name: str, group: str = "") -> str:
    return f"{group}__{cls.__name__}__{name}"


def config_from(args: argparse.Namespace, cls, *, preset=None, group: str = "", **fixed):
    """The cls that the options add_options made for it (in group) hold in args (the other
    fields from preset, or cls's defaults), with fixed overriding both."""
    base = preset if preset is not None else cls()
    dests = {name: _dest(cls, name, group) for name in _fields(cls)}
    values = {name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)}
    for name, value in values.items():
        if isinstance(getattr(base, name), tuple):
            values[name] = tuple(value)
    return dataclasses.replace(base, **{**values, **fixed})


def given(args: argparse.Namespace, cls, name: str, group: str = ""):
    """The value of cls's field name in args (add_options's option), for checks before the work."""
    return getattr(args, _dest(cls, name, group))
