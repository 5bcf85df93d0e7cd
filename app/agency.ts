import type { AgencySettings } from "./config/types.ts";

/**
 * Agency-wide settings: the one place for facts shared by every client.
 *
 * `namePrefix` makes bucket names globally unique. It is part of every volume and bucket name:
 * changing it later replaces them (data loss), so pick it once.
 */
export const AGENCY: AgencySettings = {
  namePrefix: "pixelco",
  // Local state (gitignored) is fine for one operator. For a team, create a versioned, encrypted S3 bucket
  // once and use: { type: "s3", bucket: "pixelco-terraform-state", region: "eu-central-1" }
  stateBackend: { type: "local" },
};
