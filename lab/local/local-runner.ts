import { spawn } from "node:child_process";
import type { Step } from "../../scripts/lib/shell.ts";
import { StepFailed, type RunOptions, type RunResult } from "../../scripts/lib/ssh.ts";
import type { Runner } from "../../scripts/lib/state.ts";

/**
 * Runs Steps with the local bash, with the same contract as SshRunner (stdin script, progress from stderr,
 * StepFailed on a non-zero exit). ssh-runner.test.ts proves the SSH transport against a real sshd; the
 * restore tests use this to keep the unit suite fast (an sshd session costs ~0.5 s on this machine).
 */
export class LocalRunner implements Runner {
  readonly destination = "this machine";

  private readonly env: NodeJS.ProcessEnv;
  constructor(env: NodeJS.ProcessEnv) {
    this.env = env;
  }

  run(step: Step, options: RunOptions = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn("bash", ["-s"], { env: this.env, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d));
      child.stderr.on("data", (d: Buffer) => {
        stderr += d;
        String(d).split("\n").filter((l) => l.trim()).forEach((l) => options.onProgress?.(l));
      });
      child.once("close", (code) => {
        const result = { stdout, stderr, exitCode: code ?? 1 };
        if (result.exitCode !== 0 && !options.allowFailure) reject(new StepFailed(step.title, result, "see above"));
        else resolve(result);
      });
      child.stdin.on("error", () => undefined); // EPIPE when bash exits before reading it all: its exit status tells
      child.stdin.end(step.script.text);
    });
  }
}
