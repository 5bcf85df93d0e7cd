#!/usr/bin/env node
// `npx cdktf …` runs CDK Terrain's CLI (cdktn-cli, the maintained continuation of cdktf-cli, which has no
// build for Node 24+), so every command in the docs keeps its name. Why and the way out: README, "CDK for
// Terraform is archived".
"use strict";
const { engines } = require("../../package.json");

const [major, minor] = process.versions.node.split(".").map(Number);
const [needMajor, needMinor] = engines.node.replace(/^>=/, "").split(".").map(Number);
if (major < needMajor || (major === needMajor && minor < needMinor)) {
  console.error(
    `cdktf: Node ${process.versions.node} is too old for this kit (package.json engines.node: "${engines.node}").\n` +
      "Fix: install Node 22, 24 or 26 (README, Requirements) and run the command again.",
  );
  process.exitCode = 1;
} else {
  // No telemetry call to HashiCorp's checkpoint service (it prints getaddrinfo errors offline).
  process.env.CHECKPOINT_DISABLE ??= "1";
  // Node 25+ warns when a dependency merely looks for `localStorage` (the CLI never uses it): drop that one warning.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) => (/localStorage/.test(String(warning)) ? undefined : emitWarning.call(process, warning, ...rest));
  require("cdktn-cli/bin/cdktn");
}
