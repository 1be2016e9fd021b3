#!/usr/bin/env python3
"""Link stubs for the Apple frameworks the macOS binaries use, so that they can be linked
on Linux with zig, which carries libSystem but no frameworks.

The certificate verifier (rustls-platform-verifier, through security-framework) links
Security and CoreFoundation; the relay's PostgreSQL client (through whoami) links
SystemConfiguration. A linker needs, for each framework, only its install name and the
names it exports: a text-based stub (`.tbd`). This script writes them from the
declarations of the Rust bindings the build actually uses (`security-framework-sys`,
`core-foundation-sys`, `objc2-core-foundation`, `objc2-system-configuration`, found with
`cargo metadata`), so no file of Apple's SDK is needed or copied. The binary then loads
the real frameworks from /System/Library/Frameworks at run time, as one linked against
the SDK does.

    macos_stubs.py write DIR        DIR/Security.framework/Security.tbd, ... (for -F DIR)
    macos_stubs.py check BINARY...  every symbol a binary takes from a framework is one
                                    that framework's bindings declare (llvm-nm -m), and it
                                    loads each framework by its system path

Only the standard library is used.
"""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# framework -> (the crates declaring its functions, install name)
FRAMEWORKS = {
    "Security": (
        ["security-framework-sys"],
        "/System/Library/Frameworks/Security.framework/Versions/A/Security",
    ),
    "CoreFoundation": (
        ["core-foundation-sys", "objc2-core-foundation"],
        "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    ),
    "SystemConfiguration": (
        ["objc2-system-configuration"],
        "/System/Library/Frameworks/SystemConfiguration.framework/Versions/A/SystemConfiguration",
    ),
}
TARGETS = "[ x86_64-macos, arm64-macos ]"

EXTERN_START = re.compile(r'^\s*(?:unsafe\s+)?extern\s+"C(?:-unwind)?"\s*\{')
DECLARATION = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:safe\s+|unsafe\s+)?(?:fn|static(?:\s+mut)?)\s+(\w+)"
)


@functools.cache
def macos_packages() -> dict[str, Path]:
    """The `src/` of each package Cargo.lock resolves for the macOS build, by name."""
    out = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1",
         "--filter-platform", "aarch64-apple-darwin"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    metadata = json.loads(out)
    used = {node["id"] for node in metadata["resolve"]["nodes"]}
    return {
        package["name"]: Path(package["manifest_path"]).parent / "src"
        for package in metadata["packages"]
        if package["id"] in used
    }


def declared_symbols(src: Path) -> set[str]:
    """Names declared inside `extern "C" { ... }` (or "C-unwind") blocks under `src`."""
    names = set()
    for file in sorted(src.rglob("*.rs")):
        depth = 0
        inside = False
        for line in file.read_text(encoding="utf-8").splitlines():
            code = line.split("//", 1)[0]
            if not inside and EXTERN_START.match(code):
                inside = True
                depth = 0
            if inside:
                match = DECLARATION.match(code)
                if match:
                    names.add(match.group(1))
                depth += code.count("{") - code.count("}")
                if depth <= 0:
                    inside = False
    return names


@functools.cache
def framework_symbols(framework: str) -> tuple[str, ...]:
    """Every name the build's bindings of `framework` declare."""
    crates, _ = FRAMEWORKS[framework]
    packages = macos_packages()
    found = [packages[c] for c in crates if c in packages]
    if not found:
        raise SystemExit(f"macos_stubs: none of {crates} is in the macOS build graph")
    symbols = sorted(set().union(*(declared_symbols(src) for src in found)))
    if not symbols:
        raise SystemExit(f"macos_stubs: no declarations found in {crates}")
    return tuple(symbols)


def tbd(install_name: str, symbols: tuple[str, ...]) -> str:
    lines = [
        "--- !tapi-tbd",
        "tbd-version:     4",
        f"targets:         {TARGETS}",
        f"install-name:    '{install_name}'",
        "current-version: 1",
        "compatibility-version: 1",
        "exports:",
        f"  - targets:         {TARGETS}",
        "    symbols:         [ " + ",\n                       ".join("_" + s for s in symbols) + " ]",
        "...",
        "",
    ]
    return "\n".join(lines)


def write(out: Path) -> None:
    for framework, (crates, install_name) in FRAMEWORKS.items():
        symbols = framework_symbols(framework)
        folder = out / f"{framework}.framework"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{framework}.tbd").write_text(tbd(install_name, symbols), encoding="utf-8")
        print(f"    {framework}.framework stub: {len(symbols)} symbols ({', '.join(crates)})")


def llvm_tool(name: str) -> Path:
    sysroot = subprocess.run(
        ["rustc", "--print", "sysroot"], check=True, capture_output=True, text=True
    ).stdout.strip()
    found = sorted(Path(sysroot).glob(f"lib/rustlib/*/bin/{name}"))
    if not found:
        raise SystemExit(f"macos_stubs: {name} missing (rustup component add llvm-tools)")
    return found[0]


def check(binaries: list[str]) -> None:
    """Fails unless each binary takes every framework symbol from the framework whose
    bindings declare it, and loads the frameworks it uses by their system install names."""
    undefined = re.compile(r"\(undefined\) (?:weak )?external _(\w+) \(from (\w+)\)")
    for binary in binaries:
        listing = subprocess.run(
            [str(llvm_tool("llvm-nm")), "-m", binary], check=True, capture_output=True, text=True
        ).stdout
        counts = {framework: 0 for framework in FRAMEWORKS}
        wrong = []
        for match in undefined.finditer(listing):
            symbol, source = match.groups()
            if source in FRAMEWORKS:
                counts[source] += 1
                if symbol not in framework_symbols(source):
                    wrong.append(f"{symbol} (from {source})")
        if wrong:
            raise SystemExit(f"macos_stubs: {binary} binds symbols no binding declares: {wrong}")
        dylibs = subprocess.run(
            [str(llvm_tool("llvm-objdump")), "--macho", "--dylibs-used", binary],
            check=True, capture_output=True, text=True,
        ).stdout
        for framework, (_, install_name) in FRAMEWORKS.items():
            if counts[framework] and install_name not in dylibs:
                raise SystemExit(f"macos_stubs: {binary} does not load {install_name}")
        summary = ", ".join(f"{n} from {f}" for f, n in counts.items())
        print(f"    {binary}: {summary}; each declared by its framework's bindings")


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        check(sys.argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
