/** restore.ts --local against a LocalKit's S3: the Target it reads from the outputs file, and the lab CA trusted. */
import type { LocalKit } from "../../../lab/local/local-kit.ts";
import { Secret } from "../../../scripts/lib/secret.ts";
import type { Target } from "../../../scripts/lib/target.ts";

/** What restore.ts reads from the outputs file: bucket, region, replica path, endpoint, the kit's key. */
export function localTarget(kit: LocalKit, o: { replicaPath?: string; endpoint?: string } = {}): Target {
  const env = kit.environment;
  return {
    ...({} as Target),
    env,
    outputsFile: `outputs/${env.stackName}.json`,
    bucket: env.names.bucket,
    region: env.backups.region,
    replicaPath: o.replicaPath ?? kit.path("litestreamPrefix"),
    s3Endpoint: o.endpoint ?? kit.access.endpoint,
    credentials: { accessKeyId: kit.access.accessKeyId, secretAccessKey: new Secret(kit.access.secretAccessKey) },
  };
}

/**
 * The operator's machine trusts the lab's CA as it trusts a real S3's: Litestream and the AWS SDK in it
 * read these (this machine may point them at the system bundle). Returns the undo.
 */
export function trustLabCa(caFile: string): () => void {
  const saved = { SSL_CERT_FILE: process.env.SSL_CERT_FILE, AWS_CA_BUNDLE: process.env.AWS_CA_BUNDLE };
  Object.assign(process.env, { SSL_CERT_FILE: caFile, AWS_CA_BUNDLE: caFile });
  return () => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  };
}
