#!/usr/bin/env python3
"""The crates' "never" rules (docs/ARCHITECTURE.md, "Invariants"), checked over `cargo metadata`.

Each workspace crate may depend (directly, normal or build dependencies) only on the workspace
crates its rule allows, and nothing it depends on, however indirectly, may be one of the crates
its rule forbids. A function (examples/*) depends on function-base alone. Only rfa-engine talks
to Docker: it alone depends on bollard directly, and only crates that depend on rfa-engine (the
CLI, the scaler) reach bollard at all. Dev-dependencies (tests) are not checked.

Usage: scripts/check-layering.py [--metadata FILE]
  Without --metadata it runs `cargo metadata --format-version 1 --locked` in the workspace.
  Exits 1 and names every broken rule, 0 when all hold.
"""

import json
import subprocess
import sys
from pathlib import Path

# package -> (workspace crates it may depend on directly, crates it must never reach)
SERVERS_NEVER = {"rfaas-cli", "bollard", "rfa-engine", "rfa-scaler"}
NO_DOCKER = {"bollard", "rfa-engine", "rfa-scaler", "rfaas-cli"}
RULES = {
    "rfa-wire": (set(), {"axum", "hyper", "sled", "reqwest"} | NO_DOCKER),
    # (tonic, its OTLP exporter, may bring axum: that is its business.)
    "rfa-telemetry": ({"rfa-wire"}, {"sled"} | NO_DOCKER),
    "rfa-io": ({"rfa-wire", "rfa-telemetry"}, {"sled"} | NO_DOCKER),
    "rfa-proxy": (
        {"rfa-wire", "rfa-telemetry", "rfa-io"},
        SERVERS_NEVER | {"rfa-store", "function-base", "sled"},
    ),
    "rfa-store": (
        {"rfa-wire", "rfa-telemetry", "rfa-io"},
        SERVERS_NEVER | {"rfa-proxy", "function-base"},
    ),
    "function-base": (
        {"rfa-wire", "rfa-telemetry", "rfa-io"},
        SERVERS_NEVER | {"rfa-proxy", "rfa-store", "sled"},
    ),
    # The one crate that calls Docker: a library under the CLI and the scaler, knowing neither.
    "rfa-engine": (
        {"rfa-wire"},
        {"rfaas-cli", "rfa-scaler", "rfa-proxy", "rfa-store", "function-base", "sled", "axum"},
    ),
    # The scaler acts through the engine interface and talks to the gateway over HTTP.
    "rfa-scaler": (
        {"rfa-wire", "rfa-telemetry", "rfa-io", "rfa-engine"},
        {"rfaas-cli", "rfa-proxy", "rfa-store", "function-base", "sled"},
    ),
    # The CLI runs the servers' binaries; it never links them.
    "rfaas-cli": (
        {"rfa-wire", "rfa-engine"},
        {"rfa-proxy", "rfa-store", "function-base", "rfa-scaler", "sled", "axum"},
    ),
    # End-to-end tests drive binaries; they may read the wire types.
    "rfaas-tests": ({"rfa-wire"}, {"bollard", "rfa-engine"}),
}
# The only package that may depend on bollard directly; the ones that may reach it through it.
DOCKER_CLIENT = "rfa-engine"


def load(argv):
    if len(argv) == 3 and argv[1] == "--metadata":
        return json.loads(Path(argv[2]).read_text())
    if len(argv) != 1:
        sys.exit(__doc__)
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def check(meta):
    packages = {p["id"]: p for p in meta["packages"]}
    members = set(meta["workspace_members"])
    name = {pid: packages[pid]["name"] for pid in packages}
    # Normal and build edges only.
    edges = {}
    for node in meta["resolve"]["nodes"]:
        deps = set()
        for dep in node.get("deps", []):
            kinds = {k.get("kind") for k in dep.get("dep_kinds", [])}
            if kinds - {"dev"}:
                deps.add(dep["pkg"])
        edges[node["id"]] = deps

    def reach(pid):
        seen, todo = set(), list(edges.get(pid, ()))
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(edges.get(d, ()))
        return seen

    member_names = {name[m] for m in members}
    errors = []
    for pid in sorted(members, key=lambda m: name[m]):
        pkg = packages[pid]
        crate = pkg["name"]
        direct_ws = {name[d] for d in edges.get(pid, ()) if d in members}
        reached = {name[d] for d in reach(pid)}
        is_function = "/examples/" in pkg["manifest_path"].replace("\\", "/")
        if is_function:
            direct = {name[d] for d in edges.get(pid, ())}
            for extra in sorted(direct - {"function-base"}):
                errors.append(
                    f"{crate} (a function) depends on {extra}: a function links function-base "
                    "alone (it re-exports axum, serde, serde_json, tokio)"
                )
            continue
        rule = RULES.get(crate)
        if rule is None:
            errors.append(
                f"{crate} has no layering rule: add one to scripts/check-layering.py and "
                "docs/ARCHITECTURE.md"
            )
            continue
        allowed, never = rule
        for d in sorted(direct_ws - allowed):
            errors.append(f"{crate} must not depend on {d} (allowed: {', '.join(sorted(allowed)) or 'none'})")
        for d in sorted(reached & never):
            how = "directly" if d in {name[x] for x in edges.get(pid, ())} else "through its dependencies"
            errors.append(f"{crate} must never depend on {d}, and does {how}")
        direct_all = {name[x] for x in edges.get(pid, ())}
        if "bollard" in direct_all and crate != DOCKER_CLIENT:
            errors.append(
                f"{crate} depends on bollard directly: only {DOCKER_CLIENT} talks to Docker "
                f"(use its Engine or FunctionEngine)"
            )
        elif (
            "bollard" in reached
            and crate != DOCKER_CLIENT
            and DOCKER_CLIENT not in reached
            and "bollard" not in never
        ):
            errors.append(f"{crate} depends on bollard: only {DOCKER_CLIENT} talks to Docker")
    unknown_rules = set(RULES) - member_names
    return errors, sorted(unknown_rules)


def main(argv):
    meta = load(argv)
    errors, _absent = check(meta)
    if errors:
        print("layering: the crates' rules are broken:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        print("See docs/ARCHITECTURE.md, \"Invariants\".", file=sys.stderr)
        return 1
    print(f"layering: {len(meta['workspace_members'])} crates keep their rules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
