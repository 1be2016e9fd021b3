#!/usr/bin/env python3
"""Packs built `bridge` and `relay` binaries into what a release ships, in OUT (dist/):

- `<binary>-<version>-<target>.tar.gz` (`.zip` for Windows), each holding the binary;
- `SHA256SUMS` over every archive;
- `npm/`: the launcher package `mcp-tunnel` and one package per platform
  (`@mcp-tunnel/<os>-<cpu>`, selected by npm through `optionalDependencies`, `os`, `cpu`);
- `pypi/`: one wheel per platform carrying `bridge` as the `mcp-tunnel` command;
- `install.sh` and `install.ps1` with the version filled in;
- `container/`: the relay image's build context (Linux targets), and `homebrew/`: the
  formula, when every macOS and Linux target was built.

Usage: pack.py --version V --out OUT [--npm] [--pypi] TARGET=DIR [TARGET=DIR ...]
where DIR holds the target's built `bridge` (and `relay`, if built) binaries.
Only the standard library is used; the archives are reproducible (fixed times and modes).
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
EPOCH = 315532800  # 1980-01-01, the earliest time a zip can carry
REPOSITORY = "https://github.com/mcp-tunnel/mcp-tunnel"
DESCRIPTION = "Serve desktop MCP servers to ChatGPT, Claude and other hosted AI clients"

# Rust target -> (npm os, npm cpu, wheel platform tags)
TARGETS = {
    "x86_64-unknown-linux-musl": (
        "linux", "x64",
        ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "musllinux_1_1_x86_64"],
    ),
    "aarch64-unknown-linux-musl": (
        "linux", "arm64",
        ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "musllinux_1_1_aarch64"],
    ),
    "x86_64-apple-darwin": ("darwin", "x64", ["macosx_10_12_x86_64"]),
    "aarch64-apple-darwin": ("darwin", "arm64", ["macosx_11_0_arm64"]),
    "x86_64-pc-windows-gnu": ("win32", "x64", ["win_amd64"]),
    "x86_64-pc-windows-gnullvm": ("win32", "x64", ["win_amd64"]),
    "aarch64-pc-windows-gnullvm": ("win32", "arm64", ["win_arm64"]),
}


def exe_name(binary: str, target: str) -> str:
    return binary + (".exe" if "windows" in target else "")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive(binary: Path, name: str, target: str, out: Path) -> Path:
    """One binary in a reproducible archive."""
    data = binary.read_bytes()
    if "windows" in target:
        path = out / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo(binary.name, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
        return path
    path = out / f"{name}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(binary.name)
        info.size, info.mode, info.mtime = len(data), 0o755, EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        t.addfile(info, io.BytesIO(data))
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=EPOCH) as g:
        g.write(raw.getvalue())
    return path


def npm_platform(version: str, target: str, bridge: Path, work: Path) -> Path:
    npm_os, cpu, _ = TARGETS[target]
    name = f"@mcp-tunnel/{npm_os}-{cpu}"
    pkg = work / f"{npm_os}-{cpu}"
    (pkg / "bin").mkdir(parents=True)
    dest = pkg / "bin" / exe_name("bridge", target)
    shutil.copyfile(bridge, dest)
    dest.chmod(0o755)
    manifest = {
        "name": name,
        "version": version,
        "description": f"The mcp-tunnel bridge for {npm_os} {cpu} (installed by mcp-tunnel)",
        "repository": REPOSITORY,
        "license": "MIT OR Apache-2.0",
        "os": [npm_os],
        "cpu": [cpu],
        "files": ["bin/"],
        "preferUnplugged": True,
    }
    (pkg / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (pkg / "README.md").write_text(
        f"# {name}\n\nThe `bridge` binary of [mcp-tunnel]({REPOSITORY}) for {npm_os} {cpu}.\n"
        "Install `mcp-tunnel` instead; npm picks this package for you.\n"
    )
    return pkg


def npm_launcher(version: str, platforms: list, work: Path) -> Path:
    pkg = work / "mcp-tunnel"
    shutil.copytree(PACKAGING / "npm" / "mcp-tunnel", pkg)
    (pkg / "bin" / "mcp-tunnel.js").chmod(0o755)
    manifest = {
        "name": "mcp-tunnel",
        "version": version,
        "description": DESCRIPTION,
        "repository": REPOSITORY,
        "license": "MIT OR Apache-2.0",
        "bin": {"mcp-tunnel": "bin/mcp-tunnel.js"},
        "files": ["bin/"],
        "engines": {"node": ">=16"},
        "optionalDependencies": {p: version for p in sorted(platforms)},
    }
    (pkg / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.copyfile(PACKAGING / "npm" / "README.md", pkg / "README.md")
    return pkg


def npm_pack(pkg: Path, out: Path) -> Path:
    done = subprocess.run(
        ["npm", "pack", "--json", "--pack-destination", str(out.resolve())],
        cwd=pkg, check=True, capture_output=True, text=True,
    )
    return out / json.loads(done.stdout)[0]["filename"]


def b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def wheel(version: str, target: str, bridge: Path, out: Path) -> Path:
    """A wheel whose only content is `bridge` installed as the `mcp-tunnel` script."""
    _, _, tags = TARGETS[target]
    dist = "mcp_tunnel"
    plat = ".".join(tags)
    path = out / f"{dist}-{version}-py3-none-{plat}.whl"
    script = f"{dist}-{version}.data/scripts/{exe_name('mcp-tunnel', target)}"
    info = f"{dist}-{version}.dist-info"
    readme = (PACKAGING / "pypi" / "README.md").read_text()
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: mcp-tunnel\n"
        f"Version: {version}\n"
        f"Summary: {DESCRIPTION}\n"
        f"Home-page: {REPOSITORY}\n"
        "License: MIT OR Apache-2.0\n"
        "Requires-Python: >=3.7\n"
        "Description-Content-Type: text/markdown\n\n" + readme
    )
    wheel_file = "Wheel-Version: 1.0\nGenerator: mcp-tunnel-dist\nRoot-Is-Purelib: false\n" + "".join(
        f"Tag: py3-none-{t}\n" for t in tags
    )
    files = [
        (script, bridge.read_bytes(), 0o755),
        (f"{info}/METADATA", metadata.encode(), 0o644),
        (f"{info}/WHEEL", wheel_file.encode(), 0o644),
    ]
    record = "".join(
        f"{name},sha256={b64(hashlib.sha256(data).digest())},{len(data)}\n" for name, data, _ in files
    ) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode(), 0o644))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in files:
            zi = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--version", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--npm", action="store_true", help="also the npm packages")
    p.add_argument("--pypi", action="store_true", help="also the wheels")
    p.add_argument(
        "--download-base",
        default=None,
        help="the folder URL the release's archives are downloaded from (the Homebrew formula)",
    )
    p.add_argument("built", nargs="+", help="TARGET=DIR")
    a = p.parse_args()
    if a.download_base is None:
        a.download_base = f"{REPOSITORY}/releases/download/v{a.version}"
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    built = {}
    for pair in a.built:
        target, _, folder = pair.partition("=")
        if target not in TARGETS:
            print(f"pack.py: unknown target {target}", file=sys.stderr)
            return 2
        built[target] = Path(folder)
    archives = []
    for target, folder in sorted(built.items()):
        for binary in ("bridge", "relay"):
            exe = folder / exe_name(binary, target)
            if exe.exists():
                archives.append(archive(exe, f"{binary}-{a.version}-{target}", target, out))
    (out / "SHA256SUMS").write_text(
        "".join(f"{sha256(x)}  {x.name}\n" for x in sorted(archives))
    )
    for script in ("install.sh", "install.ps1"):
        text = (PACKAGING / script).read_text().replace("@VERSION@", a.version)
        (out / script).write_text(text)
        (out / script).chmod(0o755)
    relays = {t: built[t] / "relay" for t in built if "linux" in t and (built[t] / "relay").exists()}
    if relays:
        ctx = out / "container"
        ctx.mkdir()
        shutil.copyfile(PACKAGING / "container" / "Containerfile", ctx / "Containerfile")
        for target, exe in relays.items():
            arch = "arm64" if target.startswith("aarch64") else "amd64"
            (ctx / arch).mkdir()
            shutil.copyfile(exe, ctx / arch / "relay")
            (ctx / arch / "relay").chmod(0o755)
    unix = [t for t in TARGETS if "windows" not in t]
    if all(t in built for t in unix):
        formula = (PACKAGING / "homebrew" / "mcp-tunnel.rb").read_text()
        formula = formula.replace("@VERSION@", a.version).replace("@BASE@", a.download_base)
        for t in unix:
            name = f"bridge-{a.version}-{t}.tar.gz"
            formula = formula.replace(f"@SHA256:{t}@", sha256(out / name))
        (out / "homebrew").mkdir()
        (out / "homebrew" / "mcp-tunnel.rb").write_text(formula)
    if a.npm:
        npm_out = out / "npm"
        npm_out.mkdir(exist_ok=True)
        work = out / ".npm-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        names = []
        for target, folder in sorted(built.items()):
            npm_os, cpu, _ = TARGETS[target]
            names.append(f"@mcp-tunnel/{npm_os}-{cpu}")
            npm_pack(npm_platform(a.version, target, folder / exe_name("bridge", target), work), npm_out)
        # The launcher lists every platform of the release, built here or not.
        every = sorted({f"@mcp-tunnel/{o}-{c}" for o, c, _ in TARGETS.values()})
        npm_pack(npm_launcher(a.version, every, work), npm_out)
        shutil.rmtree(work)
    if a.pypi:
        pypi_out = out / "pypi"
        pypi_out.mkdir(exist_ok=True)
        for target, folder in sorted(built.items()):
            wheel(a.version, target, folder / exe_name("bridge", target), pypi_out)
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f.relative_to(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
