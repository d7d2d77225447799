"""Read a multi-document YAML file of Bakeoff resources into the API models.

Every problem names the document (index, kind and name), the field path in the YAML's own
camelCase spelling, and the fix; all problems of a file are reported together. `bakeoff run`
(local mode) loads its input with `load_documents`, so a file that loads here is one the API server
also accepts: documents are validated as the JSON kubectl would send, in pydantic's strict mode (a
quoted number or a boolean is no integer), and the CEL rules mirror the validators.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from bakeoff_runtime.gpus import default_catalog
from pydantic import BaseModel, ValidationError

from bakeoff_operator.api.bakeoff import BakeOff
from bakeoff_operator.api.common import API_VERSION, DURATION_PATTERN
from bakeoff_operator.api.gpuclass import GPUClass
from bakeoff_operator.api.modelvariant import AUTO, KNOWN_VLLM_FLAGS_CONTEXT, ModelVariant

Resource = GPUClass | ModelVariant | BakeOff
R = TypeVar("R", bound=BaseModel)
KINDS: dict[str, type[GPUClass] | type[ModelVariant] | type[BakeOff]] = {
    "GPUClass": GPUClass,
    "ModelVariant": ModelVariant,
    "BakeOff": BakeOff,
}
DEFAULT_NAMESPACE = "default"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class JSONCompatibleLoader(yaml.SafeLoader):
    """YAML as kubectl reads it before sending JSON: timestamps stay strings (as every other scalar
    keeps the type YAML gives it), so the models see what the API server would."""


JSONCompatibleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document."""

    document: int  # 1-based position in the file
    kind: str
    name: str
    path: str  # e.g. spec.autoscaling.minReplicas
    message: str
    fix: str = ""

    def __str__(self) -> str:
        what = f"document {self.document}" if self.document else "the file"  # 0: a problem of the whole file
        if self.kind or self.name:
            what += f" ({' '.join(p for p in (self.kind, self.name) if p)})"
        where = f"{self.path}: " if self.path else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{what}: {where}{self.message}{fix}"


class ManifestError(ValueError):
    """A file with one or more invalid documents."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def load_documents(
    path: str | Path,
    *,
    substitutions: Mapping[str, str] | None = None,
    known_vllm_flags: Collection[str] | None = None,
    check_references: bool = True,
) -> list[Resource]:
    """The resources of a YAML file, in file order; `ManifestError` lists every problem.

    `substitutions` replaces `${NAME}` placeholders before parsing (local mode fills model paths this
    way); `known_vllm_flags` checks `serving.extraArgs`; `check_references` requires every variant,
    baseline and GPU class named in the file to be defined in it (GPU classes may also come from the
    default catalog), as local mode has no cluster to find them in.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ManifestError(str(p), [Problem(0, "", "", "", f"cannot read the file: {err.strerror}")]) from err
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        byte = err.object[err.start]
        problem = Problem(0, "", "", "", f"line {line}: byte 0x{byte:02x} is not UTF-8 text", "save the file as UTF-8")
        raise ManifestError(str(p), [problem]) from err
    return parse_documents(
        text,
        source=str(p),
        substitutions=substitutions,
        known_vllm_flags=known_vllm_flags,
        check_references=check_references,
    )


def parse_documents(
    text: str,
    *,
    source: str = "<string>",
    substitutions: Mapping[str, str] | None = None,
    known_vllm_flags: Collection[str] | None = None,
    check_references: bool = True,
) -> list[Resource]:
    """Like `load_documents`, from YAML text."""
    if substitutions is not None:
        text = _substitute(text, substitutions, source)
    try:
        raw_docs = list(yaml.load_all(text, Loader=JSONCompatibleLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = Problem(0, "", "", "", f"{where}not valid YAML: {err}", "check the indentation and quotes there")
        raise ManifestError(source, [problem]) from err
    problems: list[Problem] = []
    resources: list[tuple[int, Resource]] = []
    context = {KNOWN_VLLM_FLAGS_CONTEXT: known_vllm_flags} if known_vllm_flags is not None else None
    index = 0
    for doc in raw_docs:
        if doc is None:  # an empty document between `---` separators
            continue
        index += 1
        resource = _parse_one(index, doc, context, problems)
        if resource is not None:
            resources.append((index, resource))
    if not resources and not problems:
        problems.append(Problem(0, "", "", "", "no documents", "add GPUClass, ModelVariant or BakeOff resources"))
    if check_references and not problems:
        problems += _reference_problems(resources)
    if problems:
        raise ManifestError(source, problems)
    return [r for _, r in resources]


def _substitute(text: str, values: Mapping[str, str], source: str) -> str:
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ManifestError(
            source,
            [Problem(0, "", "", "", f"placeholder ${{{m}}} has no value", f"pass --set {m}=VALUE") for m in missing],
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _parse_one(index: int, doc: object, context: dict[str, Any] | None, problems: list[Problem]) -> Resource | None:
    if not isinstance(doc, dict):
        problems.append(Problem(index, "", "", "", f"expected a mapping, got {type(doc).__name__}"))
        return None
    kind = str(doc.get("kind", ""))
    meta = doc.get("metadata")
    name = str(meta.get("name", "")) if isinstance(meta, dict) else ""
    if doc.get("apiVersion") != API_VERSION:
        problems.append(
            Problem(index, kind, name, "apiVersion", f"got {doc.get('apiVersion')!r}", f"set apiVersion: {API_VERSION}")
        )
        return None
    model = KINDS.get(kind)
    if model is None:
        problems.append(
            Problem(index, kind, name, "kind", f"{kind!r} is not a Bakeoff kind", f"use one of {', '.join(KINDS)}")
        )
        return None
    try:
        return validate_document(model, doc, context)
    except ValidationError as err:
        by_path: dict[str, list[Any]] = {}
        for e in err.errors():
            by_path.setdefault(_path(e["loc"]), []).append(e)
        for path, errors in by_path.items():
            if len(errors) > 1 and all(_union_branch(e) for e in errors):
                # One value that fits no branch of a union (e.g. `int | 'auto'`): one problem, not one per branch.
                wants = " or ".join(str(e["msg"]).removeprefix("Input should be ") for e in errors)
                message = f"Input should be {wants} (got {_got(errors[0]['input'])})"
                problems.append(Problem(index, kind, name, path, message, _fix(model, errors[0])))
                continue
            problems += [Problem(index, kind, name, path, _message(e), _fix(model, e)) for e in errors]
        return None


def validate_document(model: type[R], doc: Mapping[str, Any], context: dict[str, Any] | None = None) -> R:
    """`doc` as the API server would read it: as JSON, strictly. The API server takes
    `maxNumSeqs: "64"` or `tensorParallelSize: true` for no integer, so neither does this (a lax
    model would quietly convert them); raises pydantic's ValidationError."""
    return model.model_validate_json(json.dumps(doc, default=str), strict=True, context=context)


def _union_branch(e: Mapping[str, Any]) -> bool:
    return e["type"] in _TYPE_NOUNS or e["type"] == "literal_error"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")) or part in {"int", "str", "literal['auto']"}:
            continue  # pydantic's union-branch labels, not fields
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(e: Mapping[str, Any]) -> str:
    msg = str(e["msg"])
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    if e["type"] not in {"missing", "extra_forbidden"} and "input" in e and not isinstance(e["input"], dict | list):
        msg += f" (got {_got(e['input'])})"
    return msg


def _got(value: object) -> str:
    """A value as the YAML/JSON a user wrote: true, 1.5, "64"."""
    return json.dumps(value, default=str)


def _fix(model: type[BaseModel], e: Mapping[str, Any]) -> str:
    kind = e["type"]
    loc = [p for p in e["loc"] if not isinstance(p, int)]
    if kind == "extra_forbidden":
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            return f"did you mean {close[0]}? (known fields: {', '.join(known)})"
        return f"remove it; known fields: {', '.join(known)}" if known else "remove it"
    if kind == "missing":
        return f"add {loc[-1] if loc else 'the field'}"
    if kind in {"enum", "literal_error"}:
        return "use one of the values listed"
    if kind.startswith(("greater_than", "less_than", "too_short", "too_long", "string_too", "list_too")):
        return "use a value within the bounds"
    if kind == "string_pattern_mismatch":
        if e.get("ctx", {}).get("pattern") == DURATION_PATTERN:
            return "write a duration like 90s, 5m or 1h30m"
        return "see docs/api.md for the accepted form"
    if kind in _TYPE_NOUNS:
        given = e.get("input")
        noun = _TYPE_NOUNS[kind]
        if isinstance(given, str) and kind != "string_type":
            return f"write {given} without quotes: the API server takes a {noun}, not a string"
        return f"write a {noun}" + (" (true and false are not numbers)" if isinstance(given, bool) else "")
    return ""


_TYPE_NOUNS: dict[str, str] = {
    "int_type": "whole number",
    "float_type": "number",
    "bool_type": "boolean (true or false)",
    "string_type": "string (quote it)",
    "int_from_float": "whole number",
}


def _known_fields(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Wire names of the fields of the model at `loc` (by alias), for spelling suggestions."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or n for n, f in current.model_fields.items())
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside `X | None`, `list[X]` or `dict[str, X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _reference_problems(resources: Sequence[tuple[int, Resource]]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[str, str, str], int] = {}
    gpu_classes = set(default_catalog().names)
    variants: dict[str, dict[str, ModelVariant]] = {}
    for index, r in resources:
        ns = "" if isinstance(r, GPUClass) else (r.metadata.namespace or DEFAULT_NAMESPACE)
        key = (r.kind, ns, r.metadata.name)
        if key in seen:
            problems.append(
                Problem(
                    index,
                    r.kind,
                    r.metadata.name,
                    "metadata.name",
                    f"document {seen[key]} already defines this {r.kind}",
                    "rename one of them",
                )
            )
        seen[key] = index
        if isinstance(r, GPUClass):
            gpu_classes.add(r.metadata.name)
        elif isinstance(r, ModelVariant):
            variants.setdefault(ns, {})[r.metadata.name] = r
    for index, r in resources:
        ns = r.metadata.namespace or DEFAULT_NAMESPACE
        here = variants.get(ns, {})
        if isinstance(r, ModelVariant):
            if r.spec.gpu_class != AUTO and r.spec.gpu_class not in gpu_classes:
                problems.append(
                    _ref(
                        index,
                        r,
                        "spec.gpuClass",
                        what=f"GPU class {r.spec.gpu_class!r}",
                        valid=sorted(gpu_classes),
                        noun="GPUClass",
                    )
                )
            if r.spec.baseline is not None and r.spec.baseline not in here:
                problems.append(
                    _ref(index, r, "spec.baseline", what=f"variant {r.spec.baseline!r}", valid=sorted(here))
                )
        elif isinstance(r, BakeOff):
            chosen = r.spec.select({name: v.metadata.labels for name, v in here.items()})
            for i, name in enumerate(r.spec.variants or []):
                if name in chosen.missing:
                    problems.append(_ref(index, r, f"spec.variants[{i}]", what=f"variant {name!r}", valid=sorted(here)))
            if chosen.by_selector and not chosen.names:
                problems.append(
                    Problem(
                        index,
                        r.kind,
                        r.metadata.name,
                        "spec.variantSelector",
                        f"selects no ModelVariant in namespace {ns}",
                        "label the variants or change the selector",
                    )
                )
    return problems


def _ref(index: int, r: Resource, path: str, *, what: str, valid: list[str], noun: str = "variant") -> Problem:
    close = difflib.get_close_matches(what.split("'")[1], valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return Problem(
        index,
        r.kind,
        r.metadata.name,
        path,
        f"{what} is not defined in this file",
        f"{hint}define the {noun} or use one of: {', '.join(valid) or '(none defined)'}",
    )
