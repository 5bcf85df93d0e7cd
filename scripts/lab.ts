#!/usr/bin/env node
/**
 * Try a client's server on this machine: npm run lab -- <stack> | down. See --help.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../cloud-init/layout.ts";
import { hetznerVolumeDevice } from "../stacks/server/hetzner.ts";
import { bootKitServer, createKitLab, type KitLab, labEnvironment, waitForBootstrap } from "../lab/kit-lab.ts";
import { sshArgv } from "../lab/harness/index.ts";
import { processIdentity, SCRATCH_ROOT, sweepLeftovers } from "../lab/harness/teardown.ts";
import { main, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { OpsError } from "./lib/errors.ts";
import { loadEnvironment } from "./lib/target.ts";

const HELP = `Usage: npm run lab -- <stack>      boot <stack>'s server here and keep it running
       npm run lab -- down         stop it and release everything it started

Boots the client environment's real user data (app/clients/*.ts, rendered as the stack renders it) in a
systemd container on a private network of this machine, with a local S3 (its bucket and backup user, as
the stack creates them), a git server for the app and a mirror of the pinned downloads. Prints the app's
URL and the SSH command, then keeps running until Ctrl-C or \`npm run lab -- down\`.

What differs from the cloud: no domain (Caddy serves plain HTTP on the machine's address), the lab's own
SSH key instead of the client file's, downloads and the app's git URL pointed into the lab.

Needs Linux, root, systemd-nspawn, loop devices and network namespaces (npm run setup installs the tools).
The first run builds a Debian image (a few minutes; cached in /var/cache/kit-e2e).`;

/** Where a running lab says what it is, for \`down\` and for a second \`lab\` that must not start. */
const STATE_FILE = join(SCRATCH_ROOT, "lab.json");

interface LabState {
  readonly pid: number;
  readonly startTime: string;
  readonly stack: string;
  readonly url: string;
  readonly ssh: string;
}

function runningLab(): LabState | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  const state = JSON.parse(readFileSync(STATE_FILE, "utf8")) as LabState;
  return processIdentity(state.pid)?.startTime === state.startTime ? state : undefined;
}

function requireRootOnLinux(): void {
  if (process.platform !== "linux") throw new OpsError(`the lab runs on Linux only (this is ${process.platform})`, "run it on a Linux machine or VM (Debian 12 is what CI uses)");
  if (process.getuid?.() !== 0) throw new OpsError("the lab needs root (loop devices, network namespaces, systemd-nspawn)", "sudo npm run lab -- <stack>");
}

class Stopped extends Error {}

async function up(stackName: string): Promise<number> {
  const env = loadEnvironment(stackName); // names the known stacks when it is not one
  const already = runningLab();
  if (already) throw new OpsError(`a lab is already running: ${already.stack} (pid ${already.pid}) at ${already.url}`, "npm run lab -- down   (then start the one you want)");
  let lab: KitLab | undefined;
  const stop = async (why: string) => {
    say(`\nlab: ${why}: stopping ${stackName} and releasing what the lab started…`);
    rmSync(STATE_FILE, { force: true });
    await lab?.teardown.run();
    say("lab: stopped");
  };
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("Ctrl-C"));
    process.once("SIGTERM", () => resolve("stop requested"));
  });
  // A stop while the lab is still being set up ends the setup too.
  const unlessStopped = <T>(step: Promise<T>) => Promise.race([step, stopped.then((why) => Promise.reject(new Stopped(why)))]);
  try {
    say(`lab: preparing the lab for ${stackName} (image, network, S3, git server, mirror)…`);
    lab = await unlessStopped(createKitLab());
    const labEnv = labEnvironment(lab, env.stackName);
    say(`lab: booting ${stackName}'s user data…`);
    const server = await unlessStopped(bootKitServer(lab, {
      name: `lab-${env.names.server}`.slice(0, 60),
      env: labEnv,
      // Hetzner names the device by the volume's id, which only the cloud assigns: any number stands in.
      volumeDevice: env.provider === "hetzner" ? hetznerVolumeDevice("100001") : undefined,
    }));
    const started = Date.now();
    const boot = await unlessStopped(waitForBootstrap(server));
    if (boot.status !== "done") throw new OpsError(`${stackName} did not finish booting (cloud-init: ${boot.status}); its log is above`, "fix what the log names, then npm run lab -- " + stackName);
    const url = `http://${server.machine.address}/`;
    const sshCommand = sshArgv({ key: lab.sshKey, user: LAYOUT.users.deploy, host: server.machine.address, knownHostsFile: lab.knownHostsFile }, []).slice(0, -2).join(" ");
    const self = processIdentity(process.pid)!;
    mkdirSync(SCRATCH_ROOT, { recursive: true });
    writeFileSync(STATE_FILE, JSON.stringify({ pid: process.pid, startTime: self.startTime, stack: stackName, url, ssh: sshCommand } satisfies LabState));
    process.stdout.write(
      [
        ``,
        `${stackName} is running in the lab (booted in ${((Date.now() - started) / 1000).toFixed(1)} s):`,
        `  app:   ${url}`,
        `  ssh:   ${sshCommand}`,
        `  stop:  Ctrl-C, or npm run lab -- down`,
        ``,
      ].join("\n"),
    );
    await stop(await stopped);
    return 0;
  } catch (error) {
    await stop(error instanceof Stopped ? error.message : "setup failed").catch((e: Error) => say(`lab: ${e.message}`));
    if (error instanceof Stopped) return 130;
    throw error;
  }
}

async function down(): Promise<number> {
  const state = runningLab();
  if (!state) {
    rmSync(STATE_FILE, { force: true });
    await sweepLeftovers(); // what a lab killed before its teardown left behind
    say("lab: no lab is running (anything a crashed one left was released)");
    return 0;
  }
  say(`lab: stopping ${state.stack} (pid ${state.pid})…`);
  process.kill(state.pid, "SIGTERM");
  for (let i = 0; i < 1200 && processIdentity(state.pid)?.startTime === state.startTime; i++) await new Promise((r) => setTimeout(r, 100));
  if (processIdentity(state.pid)?.startTime === state.startTime) {
    say("lab: it did not stop within 120 s: killing it and releasing what it started");
    process.kill(state.pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
  }
  rmSync(STATE_FILE, { force: true });
  await sweepLeftovers();
  say(`lab: ${state.stack} stopped; everything it started is released`);
  return 0;
}

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), {});
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const [what] = args.positional;
  if (!what) throw new OpsError("which stack?", "npm run lab -- <stack>   (or: npm run lab -- down; see --help)");
  requireRootOnLinux();
  return what === "down" ? down() : up(what);
});
