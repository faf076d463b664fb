"""Command-line flags generated from the settings models (hfprune/settings.py), so a default is written once.

Each field becomes `--field-name` with the field's description as help and its default shown; Literal fields get
choices, bool fields are switches, list fields take a comma list (layer lists also take ranges, e.g. 20-23).
With `override=True` (push and sweep, where a recipe may set the value) every flag defaults to None, meaning
"the recipe's value", and the help still shows the built-in default.
"""

from __future__ import annotations

import argparse
import typing

from pydantic import BaseModel, ValidationError

from .errors import PlanError


def _kind(annotation):
    """(python type, choices, is_list, is_bool) of a field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, list(typing.get_args(annotation)), False, False
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _kind(args[0])
    if origin is list:
        return typing.get_args(annotation)[0], None, True, False
    if annotation is bool:
        return bool, None, False, True
    return annotation, None, False, False


def flag_name(field: str, rename: dict | None = None) -> str:
    return (rename or {}).get(field, "--" + field.replace("_", "-"))


def add_model_flags(group, model: type[BaseModel], *, fields=None, exclude=(), rename: dict | None = None,
                    prefix: str = "", override: bool = False, help_prefix: str = "") -> None:
    """Add a flag per field of `model` (all, or `fields` in that order) to an argparse parser or group."""
    names = list(fields) if fields is not None else [n for n in model.model_fields if n not in exclude]
    for name in names:
        info = model.model_fields[name]
        kind, choices, is_list, is_bool = _kind(info.annotation)
        default = info.get_default(call_default_factory=True)
        text = help_prefix + (info.description or name.replace("_", " ")).replace("%", "%%")
        if default is not None and not (is_bool and default is False) and not info.is_required():
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            text += f" (default: {shown})"
        kwargs = {"dest": prefix + name, "help": text}
        if is_bool:
            kwargs.update(action="store_true", default=None if override else False)
        else:
            kwargs.update(type=str if is_list else kind, default=None if override or info.is_required() else default)
            if choices:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = "LIST" if is_list else name.split("_")[-1].upper()
            if info.is_required():
                kwargs["required"] = True
        group.add_argument(flag_name(name, rename), **kwargs)


def values_from_args(args: argparse.Namespace, model: type[BaseModel], *, prefix: str = "",
                     rename: dict | None = None) -> dict:
    """{field: value} for the fields of `model` whose flag was given (override) or defaulted, lists parsed."""
    from .plan import parse_layer_list

    out = {}
    for name, info in model.model_fields.items():
        value = getattr(args, prefix + name, None)
        if value is None:
            continue
        kind, _, is_list, _ = _kind(info.annotation)
        if is_list and isinstance(value, str):
            value = (parse_layer_list(value, flag_name(name, rename)) if kind is int
                     else [v.strip() for v in value.split(",") if v.strip()])
        out[name] = value
    return out


def build(model: type[BaseModel], values: dict, rename: dict | None = None):
    """model(**values); an invalid value is one line naming its flag (PlanError), not a pydantic traceback."""
    try:
        return model(**values)
    except ValidationError as e:
        raise PlanError(describe_error(e, lambda field: flag_name(field, rename))) from None


def describe_error(e: ValidationError, name_of) -> str:
    """The first error of `e` as one line: '--flag 0: must be at least 1'."""
    from .settings import error_text

    err = e.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    return f"{name_of(field)} {err.get('input')!r}: {error_text(err)}" if field else error_text(err)
