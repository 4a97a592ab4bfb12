// Vitest global setup: makes sure the local Temporal and SeaweedFS answer before tests run. Services
// already running (CI's `services:up`, a developer's) are used as they are; services this setup had to
// start are stopped again at the end.
import { servicesConfig, servicesDown, servicesStatus, servicesUp } from '../scripts/services/dev-services.js';

export default async function setup(): Promise<() => Promise<void>> {
  const cfg = servicesConfig();
  const missing = (await servicesStatus(cfg)).filter((s) => !s.answering).map((s) => s.name);
  if (missing.length === 0) return async () => {};
  const log = (line: string): void => console.log(`[test services] ${line}`);
  await servicesUp(cfg, missing, log);
  return async () => {
    await servicesDown(cfg, missing, log);
  };
}
