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
import { freePort } from './net.js';

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
    // An S3 port must leave room for its gRPC ports (+10000): take a busy one below 40000.
    const busy: Server = createServer();
    let s3Port = 0;
    while (s3Port === 0) {
      const candidate = 20000 + Math.floor(Math.random() * 20000);
      s3Port = await new Promise<number>((resolve) => {
        busy.once('error', () => resolve(0));
        busy.listen(candidate, '127.0.0.1', () => resolve(candidate));
      });
    }
    const temporalPort = await freePort();
    try {
      const cfg = servicesConfig({ DRO_DATA_DIR: dataDir, DRO_TEMPORAL_PORT: String(temporalPort), DRO_TEMPORAL_UI_PORT: String(await freePort()), DRO_S3_PORT: String(s3Port) });
      await expect(servicesUp(cfg, ['temporal', 's3'], () => undefined)).rejects.toThrow(/^s3: port \d+ .* is already in use/);
      expect(existsSync(join(dataDir, 'run', 'temporal.pid'))).toBe(false);
      expect(await portAnswers(temporalPort)).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  }, 120_000);

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
    const res = spawnSync(tsx, [join(import.meta.dirname, '..', 'scripts', 'services.ts'), 'up', 'postgres'], { encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('services: unknown service "postgres" (choose from temporal, s3)');
  });

  it('parses KEY=VALUE lines and names file and line of a malformed one', () => {
    expect(parseEnvFile('# c\nA=1\n\nB=x=y\n', 'f.env')).toEqual({ A: '1', B: 'x=y' });
    expect(() => parseEnvFile('A=1\nnot a pair\n', '/tmp/f.env')).toThrow('/tmp/f.env:2: expected KEY=VALUE');
  });
});
