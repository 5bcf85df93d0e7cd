/**
 * The load balancer's health check in front of `servers` > 1 (DigitalOcean's load balancer), declared once:
 * the stack builds the LB's check from it, deploy.ts derives how long to wait for the LB to take a drained
 * server out of rotation (and to put it back) from it, and the lab's stand-in checks the same path.
 *
 * The check asks each server's Caddy for the app's health path over HTTP on port 80. Caddy proxies it to the
 * app, except while LAYOUT.lbDrainFile exists: then it answers 503 on that path only (the Caddyfile's
 * `@drained`), and every user request is still proxied, so a server leaves rotation without failing any.
 */
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { LAYOUT } from "./layout.ts";

export interface HealthCheck {
  readonly protocol: "http";
  readonly port: number;
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

export const LB_HEALTH_CHECK: HealthCheck = {
  protocol: "http",
  port: LAYOUT.ports.http,
  /** DigitalOcean's minimum (its default is 10 s): a drain takes effect within seconds. */
  intervalSeconds: 3,
  /** Seconds the LB waits for an answer before it counts a failed check. */
  timeoutSeconds: 3,
  /** Failed checks in a row before the LB stops sending to a server (DigitalOcean's minimum). */
  unhealthyThreshold: 2,
  /** Passed checks in a row before it sends to the server again (DigitalOcean's minimum). */
  healthyThreshold: 2,
};

/** The path the LB checks: the app's own health path, answered through Caddy. */
export const lbHealthPath = (env: Pick<ResolvedEnvironment, "app">): string => env.app.healthPath;

/**
 * The longest a load balancer with this check can take to see `threshold` checks in a row fail (or pass)
 * after a change: up to one interval until the next check, the further checks an interval apart, the last
 * one's timeout, and a second's margin.
 */
export function reactionSeconds(check: Pick<HealthCheck, "intervalSeconds" | "timeoutSeconds">, threshold: number): number {
  return threshold * check.intervalSeconds + check.timeoutSeconds + 1;
}

/** How long deploy.ts waits after draining a server before it touches it: the LB has stopped sending by then. */
export const drainWaitSeconds = (check: HealthCheck = LB_HEALTH_CHECK): number => reactionSeconds(check, check.unhealthyThreshold);
/** How long it waits after undraining before the next server is drained: the LB sends to this one again by then. */
export const undrainWaitSeconds = (check: HealthCheck = LB_HEALTH_CHECK): number => reactionSeconds(check, check.healthyThreshold);
