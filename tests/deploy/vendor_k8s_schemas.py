"""Rebuild tests/deploy/k8s-schemas-<version>-strict.json from the kubernetes-validate wheel.

The PyPI package ``kubernetes-validate`` ships the Kubernetes OpenAPI definitions as JSON
Schema (draft 2020-12), including "strict" variants that reject unknown fields. It cannot be
installed next to Rasa 3.6 (it needs jsonschema>=4.23, Rasa pins <4.18), and it is 22 MB, so we
vendor only the definitions reachable from the kinds deploy/k8s/ uses.

    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    python tests/deploy/vendor_k8s_schemas.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl

The output holds ``$defs`` (pruned definitions, refs rewritten to ``#/$defs/…``) and ``kinds``
(``"apps/v1 Deployment"`` → definition name); tests/test_deploy.py validates with
``{"$ref": "#/$defs/<name>", "$defs": …}`` and jsonschema's Draft 2020-12 validator.
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

VERSION = "v1.30.0"
KINDS = [
    ("v1", "Namespace"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"),
    ("v1", "ServiceAccount"), ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
    ("policy/v1", "PodDisruptionBudget"),
]
OUT = Path(__file__).resolve().parent / f"k8s-schemas-{VERSION}-strict.json"


def rewrite(node):
    """Turn ``/api/_definitions.json#/$defs/x`` refs into ``#/$defs/x``; drop descriptions.

    (A ``description`` whose value is text is documentation; a field of that name is a dict.)
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                continue
            if key == "$ref" and isinstance(value, str) and "#/$defs/" in value:
                value = "#/$defs/" + value.split("#/$defs/", 1)[1]
            out[key] = rewrite(value)
        return out
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                yield value[len("#/$defs/"):]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def main(wheel: str) -> None:
    base = f"kubernetes_validate/kubernetes-json-schema/{VERSION}-local-strict/"
    with zipfile.ZipFile(wheel) as z:
        defs = rewrite(json.loads(z.read(base + "_definitions.json")))["$defs"]
    kinds = {}
    for api_version, kind in KINDS:
        group, _, version = api_version.rpartition("/")
        names = [n for n, d in defs.items() if {"group": group, "kind": kind, "version": version}
                 in d.get("x-kubernetes-group-version-kind", [])]
        if len(names) != 1:
            raise SystemExit(f"{api_version} {kind}: {names}")
        kinds[f"{api_version} {kind}"] = names[0]
    keep, todo = set(), list(kinds.values())
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo.extend(refs(defs[name]))
    bundle = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": f"Kubernetes {VERSION} strict JSON schemas for the kinds in deploy/k8s/, "
                       "pruned from the PyPI package kubernetes-validate 1.37.0 "
                       "(Apache-2.0); regenerate with tests/deploy/vendor_k8s_schemas.py.",
        "kinds": kinds,
        "$defs": {n: defs[n] for n in sorted(keep)},
    }
    OUT.write_text(json.dumps(bundle, indent=1, sort_keys=False) + "\n")
    print(f"{OUT.name}: {len(kinds)} kinds, {len(keep)} definitions")


if __name__ == "__main__":
    main(sys.argv[1])
