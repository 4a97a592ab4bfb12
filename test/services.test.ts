// The dev-services scripts: clear errors for busy ports and bad settings, and `down` never touches a
// process it did not start. (Starting for real is exercised by every test that uses the services.)
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portAnswers, servicesConfig, servicesDown, servicesStatus, servicesUp } from '../scripts/services/dev-services.js';
import { parseEnvFile } from '../workers/services-env.js';
import { freePort, freeS3BasePort, withFreshPorts } from './net.js';

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'dro-services-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('services up', () => {
  it('fails at once with the port and its variable when a port is taken, and starts nothing', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const cfg = servicesConfig({ DRO_DATA_DIR: dataDir, DRO_TEMPORAL_PORT: String(port), DRO_TEMPORAL_UI_PORT: String(await freePort()) });
      await expect(servicesUp(cfg, ['temporal'], () => undefined)).rejects.toThrow(
        `temporal: port ${port} (Temporal gRPC (DRO_TEMPORAL_PORT)) is already in use by another process`,
      );
      expect(existsSync(join(dataDir, 'run', 'temporal.pid'))).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('a half-failed up stops what it started: Temporal up, SeaweedFS refused, Temporal stopped again', async () => {
    // SeaweedFS's base port, held by this test; Temporal's ports are chosen again if another process takes one.
    const s3Port = await freeS3BasePort();
    const busy: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      busy.once('error', reject);
      busy.listen(s3Port, '127.0.0.1', resolve);
    });
    try {
      const cfg = await withFreshPorts(async (ports) => {
        const cfg = servicesConfig({ ...ports, DRO_DATA_DIR: dataDir, DRO_S3_PORT: String(s3Port) });
        const failure = await servicesUp(cfg, ['temporal', 's3'], () => undefined).then(
          () => new Error('services up succeeded on a busy port'),
          (err: unknown) => err as Error,
        );
        // Temporal's own port taken meanwhile: a collision withFreshPorts answers with new ports.
        if (failure.message.startsWith('temporal:')) throw failure;
        expect(failure.message).toMatch(/^s3: port \d+ .* is already in use/);
        return cfg;
      });
      expect(existsSync(join(dataDir, 'run', 'temporal.pid'))).toBe(false);
      expect(await portAnswers(cfg.temporal.port)).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  }, 120_000);

  it("a test's private start is tried again on new ports after a collision, and any other failure is thrown at once", async () => {
    const tried: string[] = [];
    const lost = "temporal: the process exited during start-up. Last lines of temporal.log:\nError: listen tcp 127.0.0.1:1: bind: address already in use";
    const up = await withFreshPorts((ports) => {
      tried.push(ports.DRO_S3_PORT);
      return tried.length < 3 ? Promise.reject(new Error(lost)) : Promise.resolve('up');
    });
    expect(up).toBe('up');
    expect(tried).toHaveLength(3);
    let calls = 0;
    const other = withFreshPorts(() => {
      calls++;
      return Promise.reject(new Error('temporal: /x/temporal not found: run `npm run setup` first'));
    });
    await expect(other).rejects.toThrow('not found');
    expect(calls).toBe(1);
    calls = 0;
    const always = withFreshPorts(() => {
      calls++;
      return Promise.reject(new Error('s3: port 1 (S3 API (DRO_S3_PORT)) is already in use by another process'));
    }, 2);
    await expect(always).rejects.toThrow('already in use');
    expect(calls).toBe(2);
  });

  it('rejects a malformed port setting naming the variable', () => {
    expect(() => servicesConfig({ DRO_S3_PORT: 'eighty' })).toThrow('DRO_S3_PORT must be a TCP port number (1-65535), got "eighty"');
    expect(() => servicesConfig({ DRO_S3_PORT: '60000' })).toThrow(/DRO_S3_PORT 60000 is too high/);
  });
});

describe('services down', () => {
  it('leaves alone a process whose PID is in the PID file but which it did not start', async () => {
    const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      mkdirSync(join(dataDir, 'run'), { recursive: true });
      writeFileSync(join(dataDir, 'run', 'temporal.pid'), `${stranger.pid}\n`);
      const lines: string[] = [];
      await servicesDown(servicesConfig({ DRO_DATA_DIR: dataDir }), ['temporal'], (l) => lines.push(l));
      expect(lines).toEqual(['temporal: not running']);
      expect(stranger.exitCode).toBeNull();
      expect(() => process.kill(stranger.pid!, 0)).not.toThrow();
      expect(existsSync(join(dataDir, 'run', 'temporal.pid'))).toBe(false);
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  it('status reports services that were never started as stopped', async () => {
    const rows = await servicesStatus(servicesConfig({ DRO_DATA_DIR: dataDir }));
    expect(rows.map((r) => [r.name, r.pid, r.answering])).toEqual([
      ['temporal', undefined, false],
      ['s3', undefined, false],
    ]);
  });
});

describe('services command line and env file', () => {
  it('exits 1 with a message for an unknown service name', () => {
    const tsx = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsx');
    const res = spawnSync(tsx, [join(import.meta.dirname, '..', 'scripts', 'services', 'services.ts'), 'up', 'postgres'], { encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('services: unknown service "postgres" (choose from temporal, s3)');
  });

  it('parses KEY=VALUE lines and names file and line of a malformed one', () => {
    expect(parseEnvFile('# c\nA=1\n\nB=x=y\n', 'f.env')).toEqual({ A: '1', B: 'x=y' });
    expect(() => parseEnvFile('A=1\nnot a pair\n', '/tmp/f.env')).toThrow('/tmp/f.env:2: expected KEY=VALUE');
  });
});
