// Test helper: loopback ports for a test's private services, and a start that tries again with new ports
// when another process on the machine takes one between our choice and the service's bind.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { portIsFree } from '../scripts/services/dev-services.js';

/** A loopback port the OS chose just now. It is free only until someone else binds it: start through `withFreshPorts`. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The first port the kernel hands out to outgoing connections (Linux; 32768 elsewhere, its default). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {
    // Not Linux: the common default.
  }
  return 32768;
}

/**
 * A base port for SeaweedFS, which also binds the next three ports and each of the four + 10000: the OS
 * cannot choose eight such ports at once, so the base is drawn below the range the kernel gives outgoing
 * connections (where only a server binding that very port can take one) and all eight are checked free.
 */
export async function freeS3BasePort(): Promise<number> {
  const high = Math.min(ephemeralLow(), 65536) - 10004;
  const low = 10240;
  if (high <= low) throw new Error(`no room for SeaweedFS ports below the ephemeral range (starts at ${ephemeralLow()})`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low));
    const ports = [0, 1, 2, 3].flatMap((k) => [base + k, base + k + 10000]);
    let free = true;
    for (const port of ports) if (!(await portIsFree(port))) free = false;
    if (free) return base;
  }
  throw new Error('no free block of SeaweedFS ports found in 100 draws');
}

/** The port settings of `servicesConfig` for private services: Temporal's from the OS, SeaweedFS's as above. */
export async function freeServicePorts(): Promise<{ DRO_TEMPORAL_PORT: string; DRO_TEMPORAL_UI_PORT: string; DRO_S3_PORT: string }> {
  return {
    DRO_TEMPORAL_PORT: String(await freePort()),
    DRO_TEMPORAL_UI_PORT: String(await freePort()),
    DRO_S3_PORT: String(await freeS3BasePort()),
  };
}

/** Whether a failed start failed because a port was taken (our own check, or the service's bind). */
export function isPortCollision(err: unknown): boolean {
  return /already in use|EADDRINUSE/i.test(err instanceof Error ? err.message : String(err));
}

/**
 * Runs `start` with fresh ports, and again with new ones (up to `attempts` times) while it fails on a port
 * another process took in between; any other failure is thrown at once. `start` must leave nothing
 * running when it fails (`servicesUp` stops what it started).
 */
export async function withFreshPorts<T>(start: (ports: Awaited<ReturnType<typeof freeServicePorts>>) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports = await freeServicePorts();
    try {
      return await start(ports);
    } catch (err) {
      if (!isPortCollision(err) || attempt >= attempts) throw err;
      console.log(`[test ports] attempt ${attempt} lost a port to another process (${(err as Error).message.split('\n')[0]}); trying new ports`);
    }
  }
}
