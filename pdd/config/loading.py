"""Reading params: the file, a profile's dotted keys, `--set` overrides, then validation with errors that name the key.

Profiles (`profiles.demo`) and `--set key=value` overrides are dotted-key edits applied before
validation, so they are checked exactly like the file itself, and an error says which of them set the
bad value.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Union

import yaml
from pydantic import BaseModel, ValidationError

from pdd.config.schema import BASE_PROFILE, KeyProblem, Params
from pdd.errors import ConfigError

def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = (),
                profile: str | None = None) -> Params:
    """Read, override and validate `path`; raise ConfigError naming the offending key.

    Precedence, lowest first: the file, the profile's dotted keys, `overrides` (`key=value`, the
    value parsed as YAML). The profile is `profile`, else `--set profile=...`, else the file's.
    """
    path = Path(path)
    tree = _read_yaml(path)
    edits = [_parse_override(text) for text in overrides]
    active = profile or next((value for key, value in reversed(edits) if key == "profile"), None) \
        or tree.get("profile") or BASE_PROFILE
    origins: dict[str, str] = {}
    if not isinstance(active, str):
        raise ConfigError(f"profile: must be a profile name, got {active!r}")
    profiles = tree.get("profiles") or {}
    if active != BASE_PROFILE or active in profiles:
        if not isinstance(profiles, dict) or active not in profiles:
            defined = [BASE_PROFILE, *(profiles if isinstance(profiles, dict) else [])]
            raise ConfigError(f"profile: unknown profile {active!r}; defined: {', '.join(defined)} "
                              f"(add it under `profiles:` in {path})")
        profile_edits = profiles[active]
        if not isinstance(profile_edits, dict):
            raise ConfigError(f"profiles.{active}: must map dotted keys to values, got {profile_edits!r}")
        for key, value in profile_edits.items():
            _set_dotted(tree, str(key), value, source=f"profiles.{active}")
            origins[str(key)] = f"profile {active!r}"
    for key, value in edits:
        if key != "profile":
            _set_dotted(tree, key, value, source="--set")
            origins[key] = "--set"
    tree["profile"] = active
    _refuse_removed_keys(tree, path)
    try:
        return Params.model_validate(tree)
    except ValidationError as exc:
        raise _config_error(exc, path, origins) from None


# Keys earlier pdd versions knew, and what to do instead: a clear message rather than "unknown key"
REMOVED_KEYS = {
    ("train", "checkpoint_every"): "training now keeps one resumable checkpoints/last.pt (replaced every epoch, "
    "deleted when the run completes) and a weights snapshot every train.eval_every epochs; delete the key",
}


def _refuse_removed_keys(tree: dict[str, Any], path: Path) -> None:
    for key, what_to_do in REMOVED_KEYS.items():
        node: Any = tree
        for part in key[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key[-1] in node:
            raise ConfigError(f"{path}: {'.'.join(key)} was removed: {what_to_do}")


def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """`--params FILE --profile P --set KEY=VALUE...`: the same three options on every `pdd` command."""
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default: %(default)s)")
    parser.add_argument("--profile", default=None, help="apply profiles.<PROFILE> (default: the file's `profile`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted-key override, value parsed as YAML (repeatable), e.g. train.epochs=3")


def params_from_args(args: argparse.Namespace) -> Params:
    """The params selected by `add_params_arguments`' options."""
    return load_params(args.params, overrides=args.overrides, profile=args.profile)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass --params FILE")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must be a YAML mapping of sections (paths, data, train, ...)")
    return tree


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.epochs=3")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: the value {value!r} is not valid YAML ({exc})") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` in nested dicts/lists, creating mappings as needed.

    Names may contain dots (`variants.tau-0.30-0.75.overrides.tau_low`): at each level the longest
    existing key that matches wins.
    """
    parts = key.split(".")
    node: Any = tree
    done: list[str] = []
    while parts:
        if isinstance(node, dict):
            width = next((n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in node), 1)
            step: Any = ".".join(parts[:width])
        elif isinstance(node, list) and parts[0].isdigit() and int(parts[0]) < len(node):
            width, step = 1, int(parts[0])
        else:
            raise ConfigError(f"{key} (from {source}): {'.'.join(done) or 'the top level'} is "
                              f"{type(node).__name__} {node!r}, which has no key {parts[0]!r}")
        parts = parts[width:]
        done.append(str(step))
        if not parts:
            node[step] = value
        else:
            if isinstance(node, dict) and node.get(step) is None:
                node[step] = {}
            node = node[step]


def _config_error(exc: ValidationError, path: Path, origins: dict[str, str]) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, KeyProblem):
            key, message = ".".join([*loc, problem.key]), problem.message
        elif error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            key, message = ".".join(loc), "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        else:
            key = ".".join(loc)
            got = repr(error["input"])
            message = f"{error['msg']} (got {got[:60] + '...' if len(got) > 60 else got})"
        origin = next((origins[k] for k in origins if key == k or key.startswith(k + ".") or k.startswith(key + ".")),
                      None)
        lines.append(f"  {key}: {message}" + (f" [set by {origin}]" if origin else ""))
    return ConfigError(f"{path} is invalid:\n" + "\n".join(lines) +
                       f"\nFix the value in {path} (or the profile / --set override that sets it); "
                       "`pdd params check` re-validates without running anything.")


def _allowed_keys(loc: list[str]) -> list[str]:
    """Field names of the section at `loc` (dotted path into Params), for 'unknown key' hints."""
    annotation: Any = Params
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return []
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `| None` so the section type underneath shows."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        else:
            return annotation
