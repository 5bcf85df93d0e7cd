/**
 * Volumes never shrink: neither DigitalOcean nor Hetzner can make a volume smaller. The operator meets a
 * smaller `volume.sizeGiB` at `cdktf synth`/`cdktf deploy`, so synth refuses it there, with the size the
 * stack last deployed: the `volume_size_gib` output in `outputs/<stack>.json`, which `cdktf deploy
 * --outputs-file` and `cdktf output` write (stacks/client-stack.ts). Without that file this machine cannot
 * know the deployed size, and the provider refuses the shrink when Terraform asks for it.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ConfigProblem, problem } from "./config/errors.ts";
import type { ResolvedEnvironment } from "./config/types.ts";
import { REPO_ROOT } from "./repo.ts";

/** Where the scripts and this check read a stack's outputs (gitignored). */
export const outputsFileOf = (stackName: string, root = REPO_ROOT) => join(root, "outputs", `${stackName}.json`);

/** The deployed volume size of a stack from its outputs file; undefined when the file or the output is missing or unreadable. */
export function deployedVolumeGiB(file: string, stackName: string): number | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const all = JSON.parse(readFileSync(file, "utf8")) as Record<string, Record<string, unknown>>;
    const size = (all[stackName] ?? all).volume_size_gib;
    return typeof size === "number" ? size : undefined;
  } catch {
    return undefined; // the scripts report an unreadable outputs file; synth does not depend on it
  }
}

/** A problem per environment whose volume.sizeGiB is below its deployed size. */
export function shrinkProblems(envs: readonly ResolvedEnvironment[], root = REPO_ROOT): ConfigProblem[] {
  return envs.flatMap((env) => {
    const file = outputsFileOf(env.stackName, root);
    const deployed = deployedVolumeGiB(file, env.stackName);
    if (deployed === undefined || env.volume.sizeGiB >= deployed) return [];
    return [
      new ConfigProblem(
        env.sourceFile,
        `environments.${env.environment}.volume.sizeGiB`,
        problem.volumeShrink(env.volume.sizeGiB, deployed, relative(root, file)),
      ),
    ];
  });
}
