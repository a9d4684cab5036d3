"""Load the Terraform code under terraform/ with python-hcl2 (no providers, no AWS).

Every directory holding .tf files becomes a `TfDir`: its resources, data sources, variables,
outputs, module calls and locals, merged over its files. Strings keep Terraform's `${...}`
interpolation text, so tests compare references (`${module.queue.queue_arn}`) literally.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hcl2
from hcl2.utils import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"

_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


@dataclass
class Block:
    kind: str  # resource, data, module, variable, output, ephemeral
    type: str  # resource/data type, or "" for module/variable/output
    name: str
    body: dict[str, Any]
    file: Path

    def text(self) -> str:
        """The body as JSON text, for `in` searches over references."""
        return json.dumps(self.body, sort_keys=True)


@dataclass
class TfDir:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, kind: str, type_: str | None = None) -> list[Block]:
        return [b for b in self.blocks if b.kind == kind and (type_ is None or b.type == type_)]

    def get(self, kind: str, type_: str, name: str) -> Block:
        for b in self.blocks:
            if b.kind == kind and b.type == type_ and b.name == name:
                return b
        raise KeyError(f"{kind} {type_} {name} not found in {self.path}")

    def module(self, name: str) -> Block:
        return self.get("module", "", name)

    def variables(self) -> dict[str, Block]:
        return {b.name: b for b in self.of("variable")}

    def outputs(self) -> dict[str, Block]:
        return {b.name: b for b in self.of("output")}

    def source_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.path.glob("*.tf")))


def _parse(path: Path) -> dict[str, Any]:
    # the mutation tests parse many copies of the tree that differ in one file: parse each
    # distinct text once
    return copy.deepcopy(_parse_text(path.read_text()))


@functools.lru_cache(maxsize=None)
def _parse_text(text: str) -> dict[str, Any]:
    return hcl2.loads(text, serialization_options=_OPTIONS)


def load_dir(path: Path) -> TfDir:
    d = TfDir(path=path)
    for f in sorted(path.glob("*.tf")):
        doc = _parse(f)
        for kind in ("resource", "data", "ephemeral"):
            for entry in doc.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        d.blocks.append(Block(kind, type_, name, body, f))
        for kind in ("module", "variable", "output"):
            for entry in doc.get(kind, []):
                for name, body in entry.items():
                    d.blocks.append(Block(kind, "", name, body, f))
        for entry in doc.get("locals", []):
            d.locals.update({k: v for k, v in entry.items() if not k.startswith("__")})
        d.terraform.extend(doc.get("terraform", []))
        for entry in doc.get("provider", []):
            for name, body in entry.items():
                d.providers.append((name, body))
    return d


def tf_dirs(root: Path = TERRAFORM) -> list[Path]:
    return sorted(
        {p.parent for p in root.rglob("*.tf") if ".terraform" not in p.parts}
    )


class Tree:
    """All Terraform directories under one root (the real one, or a mutated copy)."""

    def __init__(self, root: Path = TERRAFORM):
        self.root = root
        self.dirs = {p.relative_to(root).as_posix(): load_dir(p) for p in tf_dirs(root)}

    def __getitem__(self, rel: str) -> TfDir:
        return self.dirs[rel]

    def modules(self) -> dict[str, TfDir]:
        return {k: v for k, v in self.dirs.items() if k.startswith("modules/")}

    def roots(self) -> dict[str, TfDir]:
        return {k: v for k, v in self.dirs.items() if not k.startswith("modules/")}

    def all_blocks(self, kind: str, type_: str | None = None) -> Iterator[tuple[str, Block]]:
        for rel, d in self.dirs.items():
            for b in d.of(kind, type_):
                yield rel, b

    def callers(self, module_dir: str) -> list[tuple[str, Block]]:
        """Module blocks (in any directory) whose source resolves to `module_dir`."""
        found = []
        for rel, d in self.dirs.items():
            for b in d.of("module"):
                src = b.body.get("source", "")
                target = (d.path / src).resolve()
                if target == (self.root / module_dir).resolve():
                    found.append((rel, b))
        return found


# --- policy documents ---------------------------------------------------------------------------

@dataclass
class Statement:
    sid: str | None
    effect: str
    actions: list[str]
    resources: Any  # list of strings, or one `${...}` expression
    conditions: list[dict[str, Any]]
    dynamic_for_each: str | None  # set when the statement comes from a `dynamic` block


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def policy_statements(doc: Block) -> list[Statement]:
    """Statements of a data "aws_iam_policy_document", static and dynamic."""
    out = []
    for st in _as_list(doc.body.get("statement")):
        out.append(_statement(st, None))
    for dyn in _as_list(doc.body.get("dynamic")):
        for label, spec in dyn.items():
            if label != "statement":
                continue
            for content in _as_list(spec.get("content")):
                out.append(_statement(content, spec.get("for_each")))
    return out


def _statement(st: dict[str, Any], for_each: str | None) -> Statement:
    return Statement(
        sid=st.get("sid"),
        effect=st.get("effect", "Allow"),
        actions=_as_list(st.get("actions")),
        resources=st.get("resources"),
        conditions=_as_list(st.get("condition")),
        dynamic_for_each=for_each,
    )


REF = re.compile(r"\b(var|local|module|aws_[a-z0-9_]+|data)\.[A-Za-z0-9_\-\.\[\]\"]+")


def refs(value: Any) -> str:
    """JSON text of a value, for reference searches."""
    return json.dumps(value, sort_keys=True)
