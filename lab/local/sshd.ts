import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { userInfo } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1, for synchronous callers (a constructor): asked of a short-lived child
 * process, since Node can only listen asynchronously.
 */
export function freePortSync(): number {
  const script = `const s=require("node:net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})`;
  return Number(execFileSync(process.execPath, ["-e", script], { encoding: "utf8" }));
}

export interface TestSshd {
  readonly dir: string;
  readonly port: number;
  readonly user: string;
  /** Client private key accepted by this sshd. */
  readonly identity: string;
  /** Restarts sshd on the same port with a new host key (a "rebuilt server"). */
  rekey(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real OpenSSH server on 127.0.0.1:<free port>, with its own host key, config and authorized key in a
 * temp dir, logging in as the current user. Nothing outside the temp dir is touched.
 */
export async function startSshd(): Promise<TestSshd> {
  const dir = mkdtempSync(join(tmpdir(), "kit-sshd-"));
  const port = await freePort();
  const user = userInfo().username;
  const identity = join(dir, "client_key");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", identity]);
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${identity}.pub`));
  let child: ChildProcess | undefined;

  const start = async () => {
    rmSync(join(dir, "host_key"), { force: true });
    rmSync(join(dir, "host_key.pub"), { force: true });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host_key")]);
    writeFileSync(
      join(dir, "sshd_config"),
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${join(dir, "host_key")}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        `AllowUsers ${user}`,
        "StrictModes no",
        "UsePAM no",
        "MaxSessions 20",
        "",
      ].join("\n"),
    );
    execFileSync("mkdir", ["-p", "/run/sshd"]);
    child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", () => undefined);
    // Ready when the port accepts connections.
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const socket = connect(port, "127.0.0.1");
        socket.once("connect", () => (socket.destroy(), resolve(true)));
        socket.once("error", () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`test sshd did not start on port ${port}`);
  };
  const stopChild = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };

  await start();
  return {
    dir,
    port,
    user,
    identity,
    rekey: async () => {
      await stopChild();
      await start();
    },
    stop: async () => {
      await stopChild();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
