#!/usr/bin/env node
// `mcp-tunnel` runs the `bridge` binary of this platform's package (an optional
// dependency npm installed beside this one: nothing is downloaded at install time),
// with the same arguments, standard streams and exit status.
"use strict";

const { spawn } = require("child_process");

const PACKAGES = {
  "linux x64": "@mcp-tunnel/linux-x64",
  "linux arm64": "@mcp-tunnel/linux-arm64",
  "darwin x64": "@mcp-tunnel/darwin-x64",
  "darwin arm64": "@mcp-tunnel/darwin-arm64",
  "win32 x64": "@mcp-tunnel/win32-x64",
  "win32 arm64": "@mcp-tunnel/win32-arm64",
};

function binary() {
  const key = `${process.platform} ${process.arch}`;
  const pkg = PACKAGES[key];
  if (!pkg) {
    throw new Error(
      `no build for ${key}; build from source: https://github.com/mcp-tunnel/mcp-tunnel`
    );
  }
  const exe = process.platform === "win32" ? "bridge.exe" : "bridge";
  try {
    return require.resolve(`${pkg}/bin/${exe}`);
  } catch (_) {
    throw new Error(
      `the package ${pkg} is not installed; npm installs it as an optional dependency ` +
        `(was --omit=optional or --no-optional given?): npm install ${pkg}`
    );
  }
}

let exe;
try {
  exe = binary();
} catch (e) {
  process.stderr.write(`mcp-tunnel: ${e.message}\n`);
  process.exit(1);
}

const child = spawn(exe, process.argv.slice(2), { stdio: "inherit", windowsHide: false });
// Signals sent to this launcher reach the bridge (one from a terminal reaches both;
// the bridge takes a second one as the same request).
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    try {
      child.kill(signal);
    } catch (_) {}
  });
}
child.on("error", (e) => {
  process.stderr.write(`mcp-tunnel: cannot start ${exe}: ${e.message}\n`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else {
    process.exit(code === null ? 1 : code);
  }
});
