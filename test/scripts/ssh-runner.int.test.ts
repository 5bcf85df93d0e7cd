/**
 * The SSH runner against a real OpenSSH server on loopback (its own host key and config in a temp dir).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OpsError } from "../../scripts/lib/errors.ts";
import { Secret } from "../../scripts/lib/secret.ts";
import { bash, step } from "../../scripts/lib/shell.ts";
import { remoteCommand, SshRunner, sshOptions, StepFailed } from "../../scripts/lib/ssh.ts";
import { freePort, startSshd, type TestSshd } from "../../lab/local/sshd.ts";

let sshd: TestSshd;
let local: string;
let runner: SshRunner;
const settings = () => ({ knownHostsFile: join(local, "known_hosts"), controlDir: join(local, "ctl"), connectTimeoutSeconds: 3 });

beforeAll(async () => {
  sshd = await startSshd();
  local = mkdtempSync(join(tmpdir(), "kit-ssh-client-"));
  runner = new SshRunner({ host: "127.0.0.1", port: sshd.port, user: sshd.user, identity: sshd.identity }, settings());
});
afterAll(async () => {
  await runner?.close();
  await sshd?.stop();
  rmSync(local, { recursive: true, force: true });
});

describe("ssh options", () => {
  test("batch mode, connect timeout, connection reuse, host keys pinned in the kit's own known_hosts", () => {
    const args = sshOptions({ host: "203.0.113.5", user: "deploy", identity: "/k/id" }, { knownHostsFile: "/kh", controlDir: "/c" }).join(" ");
    expect(args).toBe(
      "-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 " +
        "-o StrictHostKeyChecking=accept-new -o HashKnownHosts=no -o UserKnownHostsFile=/kh -o ControlMaster=auto -o ControlPath=/c/%C " +
        "-o ControlPersist=60 -o LogLevel=ERROR -i /k/id -o IdentitiesOnly=yes -p 22 -l deploy",
    );
  });

  test("scripts run as root through sudo for the deploy user, directly for root", () => {
    expect(remoteCommand({ host: "h", user: "deploy" })).toEqual(["sudo", "-n", "--", "bash", "-s"]);
    expect(remoteCommand({ host: "h", user: "root" })).toEqual(["bash", "-s"]);
  });
});

describe("SshRunner against a real sshd", () => {
  test("runs a step's script from stdin and returns its stdout; stderr lines arrive as progress", async () => {
    const lines: string[] = [];
    const result = await runner.run(step("greet", bash`echo "hello $(whoami)"; echo progress-line >&2; printf '%s\n' ${"a b 'c'"}`), {
      onProgress: (l) => lines.push(l),
    });
    expect(result.stdout).toBe(`hello ${sshd.user}\na b 'c'\n`);
    expect(lines).toEqual(["progress-line"]);
  });

  test("pins the host key on first contact in the kit's known_hosts", () => {
    const pinned = readFileSync(join(local, "known_hosts"), "utf8");
    const hostKey = readFileSync(join(sshd.dir, "host_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
    expect(pinned).toContain(`[127.0.0.1]:${sshd.port} ${hostKey}`);
  });

  test("reuses one connection: a ControlMaster socket exists while the runner is open", async () => {
    await runner.run(step("noop", bash`true`));
    expect(readdirSync(join(local, "ctl")).length).toBe(1);
  });

  test("a secret reaches the remote script but only `***` appears in what is displayed", async () => {
    const s = step("secret", bash`printf '%s' ${new Secret("s3cr3t value")} | wc -c`);
    expect(s.script.display).not.toContain("s3cr3t");
    expect(s.script.display).toContain("'***'");
    expect((await runner.run(s)).stdout.trim()).toBe("12");
  });

  test("a failing step throws StepFailed with its exit code and last stderr lines; set -euo pipefail stops it", async () => {
    const failing = step("break", bash`echo before >&2; false; echo never-printed`);
    const error = await runner.run(failing, { onProgress: () => undefined }).catch((e) => e);
    expect(error).toBeInstanceOf(StepFailed);
    expect(error.message).toContain('step "break" failed (exit 1)');
    expect(error.message).toContain("before");
    expect(error.result.stdout).not.toContain("never-printed");
    const allowed = await runner.run(failing, { allowFailure: true, onProgress: () => undefined });
    expect(allowed.exitCode).toBe(1);
  });

  test("a rebuilt server (new host key) is refused with the exact command to forget the old key", async () => {
    await runner.close();
    await sshd.rekey();
    const error = await runner.run(step("noop", bash`true`)).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toContain("is not the one pinned");
    expect(error.fix).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}' -f ${join(local, "known_hosts")}`);
    // Following the fix works.
    require("node:child_process").execFileSync("ssh-keygen", ["-R", `[127.0.0.1]:${sshd.port}`, "-f", join(local, "known_hosts")], { stdio: "ignore" });
    expect((await runner.run(step("again", bash`echo ok`))).stdout).toBe("ok\n");
  });

  test("an unreachable server fails fast with what to check", async () => {
    const port = await freePort(); // nothing listens here
    const nowhere = new SshRunner({ host: "127.0.0.1", port, user: sshd.user, identity: sshd.identity }, settings());
    const started = Date.now();
    const error = await nowhere.run(step("noop", bash`true`)).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toMatch(/cannot reach .*Connection refused/);
    expect(error.fix).toContain("sshAllowedCidrs");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("a large step (a config push) to an unreachable server: the connection error, not an uncaught write EPIPE", async () => {
    // ssh exits before it reads its stdin; the script (2 MiB, more than a pipe holds) is still being written.
    const port = await freePort();
    const nowhere = new SshRunner({ host: "127.0.0.1", port, user: sshd.user, identity: sshd.identity }, settings());
    const big = step("push", bash`: ${"x".repeat(2 * 1024 * 1024)}`);
    const error = await nowhere.run(big).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toMatch(/cannot reach .*Connection refused/);
  });

  test("a key the server does not know is refused with a hint about --identity", async () => {
    const stranger = join(local, "stranger");
    require("node:child_process").execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", stranger]);
    const r = new SshRunner({ host: "127.0.0.1", port: sshd.port, user: sshd.user, identity: stranger }, { ...settings(), controlDir: join(local, "ctl2") });
    const error = await r.run(step("noop", bash`true`)).catch((e) => e);
    expect(error.message).toContain("refused the login");
    expect(error.fix).toContain("--identity");
    expect(existsSync(join(local, "ctl2"))).toBe(true);
  });
});
