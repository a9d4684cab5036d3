"""Schema-free validation of the Terraform code: what `terraform validate` would catch without
providers (undeclared variables, wrong module arguments, missing outputs), plus the layout rules
of the project (required/optional variable files, descriptions, pinned providers, tags, backend).
"""

from __future__ import annotations

import re

from tfload import Tree

META_ARGS = {"source", "count", "for_each", "depends_on", "providers", "version"}


def check_variable_files(tree: Tree) -> list[str]:
    """Variables live in variables_required.tf (no default) and variables_optional.tf (default),
    each with a description; every output has a description."""
    problems = []
    for rel, d in tree.dirs.items():
        for v in d.of("variable"):
            fname = v.file.name
            if not v.body.get("description"):
                problems.append(f"{rel}: variable {v.name} has no description")
            if fname == "variables_required.tf" and "default" in v.body:
                problems.append(f"{rel}: required variable {v.name} has a default")
            elif fname == "variables_optional.tf" and "default" not in v.body:
                problems.append(f"{rel}: optional variable {v.name} has no default")
            elif fname not in ("variables_required.tf", "variables_optional.tf"):
                problems.append(f"{rel}: variable {v.name} declared in {fname}")
        for o in d.of("output"):
            if not o.body.get("description"):
                problems.append(f"{rel}: output {o.name} has no description")
    return problems


def _provider_constraints(d) -> dict[str, str]:
    out = {}
    for t in d.terraform:
        for rp in t.get("required_providers", []) if isinstance(t.get("required_providers"), list) else [t.get("required_providers") or {}]:
            for name, spec in rp.items():
                if isinstance(spec, dict):
                    out[name] = spec.get("version", "")
    return out


def check_provider_pins(tree: Tree) -> list[str]:
    """Modules bound every provider (lower and upper); roots pin exact versions."""
    problems = []
    for rel, d in tree.dirs.items():
        if not (d.path / "versions.tf").exists():
            problems.append(f"{rel}: no versions.tf")
            continue
        if not any(t.get("required_version") for t in d.terraform):
            problems.append(f"{rel}: no required_version")
        constraints = _provider_constraints(d)
        used = {b.type.split("_")[0] for b in d.blocks if b.kind in ("resource", "data", "ephemeral")}
        for provider in used:
            if provider not in constraints:
                problems.append(f"{rel}: provider {provider} used but not in required_providers")
        for name, c in constraints.items():
            if rel.startswith("modules/"):
                if ">=" not in c or "<" not in c.replace("<=", "<"):
                    problems.append(f"{rel}: provider {name} constraint {c!r} is not bounded")
            elif not re.fullmatch(r"=\s*\d+\.\d+\.\d+", c):
                problems.append(f"{rel}: provider {name} constraint {c!r} is not an exact pin")
    return problems


def check_module_arguments(tree: Tree) -> list[str]:
    """Every module argument is a declared variable of the callee; every required one is given."""
    problems = []
    for rel, d in tree.dirs.items():
        for call in d.of("module"):
            target = (d.path / call.body["source"]).resolve()
            callee = next((c for c in tree.dirs.values() if c.path.resolve() == target), None)
            if callee is None:
                problems.append(f"{rel}: module {call.name} source {call.body['source']} not found")
                continue
            declared = callee.variables()
            args = {k for k in call.body if k not in META_ARGS and not k.startswith("__")}
            for a in sorted(args - set(declared)):
                problems.append(f"{rel}: module {call.name} passes unknown argument {a}")
            for name, v in declared.items():
                if "default" not in v.body and name not in args:
                    problems.append(f"{rel}: module {call.name} misses required variable {name}")
    return problems


VAR_REF = re.compile(r"\bvar\.([A-Za-z0-9_]+)")
LOCAL_REF = re.compile(r"\blocal\.([A-Za-z0-9_]+)")
MODULE_REF = re.compile(r"\bmodule\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
RESOURCE_REF = re.compile(r"(?<![\w.])((?:aws|random)_[a-z0-9_]+)\.([A-Za-z0-9_]+)\b")


def check_references(tree: Tree) -> list[str]:
    """var.*, local.*, module.*.* and resource references all resolve inside their directory."""
    problems = []
    for rel, d in tree.dirs.items():
        text = "\n".join(
            re.sub(r"#.*", "", p.read_text()) for p in sorted(d.path.glob("*.tf"))
        )
        declared_vars = set(d.variables())
        for name in sorted(set(VAR_REF.findall(text)) - declared_vars):
            problems.append(f"{rel}: var.{name} is not declared")
        for name in sorted(set(LOCAL_REF.findall(text)) - set(d.locals)):
            problems.append(f"{rel}: local.{name} is not defined")
        modules = {m.name: m for m in d.of("module")}
        for mod, out in sorted(set(MODULE_REF.findall(text))):
            if mod not in modules:
                problems.append(f"{rel}: module.{mod} is not declared")
                continue
            target = (d.path / modules[mod].body["source"]).resolve()
            callee = next((c for c in tree.dirs.values() if c.path.resolve() == target), None)
            if callee is not None and out not in callee.outputs():
                problems.append(f"{rel}: module.{mod}.{out} is not an output of {modules[mod].body['source']}")
        declared = {(b.type, b.name) for b in d.blocks if b.kind == "resource"}
        for type_, name in sorted(set(RESOURCE_REF.findall(text))):
            if (type_, name) in declared:
                continue
            # data.x.y and ephemeral.x.y references are matched by their own prefixes below
            if re.search(rf"\b(data|ephemeral)\.{type_}\.{name}\b", text):
                if not any(b.type == type_ and b.name == name for b in d.blocks if b.kind in ("data", "ephemeral")):
                    problems.append(f"{rel}: {type_}.{name} is not declared")
                continue
            if re.search(rf"(?<![\w.\"]){type_}\.{name}\.", text):
                problems.append(f"{rel}: resource {type_}.{name} is not declared")
    return problems


def check_roots(tree: Tree) -> list[str]:
    """Environment roots: remote S3 state with locking and encryption, default tags, naming."""
    problems = []
    for env in ("dev", "prod"):
        rel = f"environments/{env}"
        if rel not in tree.dirs:
            problems.append(f"{rel} is missing")
            continue
        d = tree[rel]
        backends = [t.get("backend") for t in d.terraform if t.get("backend")]
        text = str(backends)
        if "s3" not in text or "'encrypt': True" not in text or ("'use_lockfile': True" not in text and "dynamodb_table" not in text):
            problems.append(f"{rel}: backend is not S3 with encryption and locking")
        for name, body in d.providers:
            provider_text = str(body)
            for tag in ("project", "environment", "service"):
                if f"'{tag}'" not in provider_text:
                    alias = body.get("alias", "default")
                    problems.append(f"{rel}: provider {name} ({alias}): default tag {tag} missing")
        calls = d.of("module")
        if [c.body.get("environment") for c in calls] != [env]:
            problems.append(f"{rel}: platform module not called with environment = {env}")
    plat = tree["modules/platform"]
    if plat.locals.get("name_prefix") != "${var.project}-${var.environment}":
        problems.append("platform: name prefix is not <project>-<env>")
    return problems


ALL_CHECKS = [
    check_variable_files,
    check_provider_pins,
    check_module_arguments,
    check_references,
    check_roots,
]
