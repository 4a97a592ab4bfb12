// Starts, stops and probes the local development services: the Temporal dev server (SQLite-backed)
// and SeaweedFS serving S3, both from the project venv. Used by `npm run services:*` and by tests that
// need a private server of their own (for example one they restart on purpose).
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, writeFileSync, unlinkSync, chmodSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseEnvFile } from '../../workers/services-env.js';
import { makeDirectoriesSync } from '../../storage/local-files.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type ServiceName = 'temporal' | 's3';
export const SERVICE_NAMES: readonly ServiceName[] = ['temporal', 's3'];

export interface ServicesConfig {
  /** Everything the services write lives here (git-ignored). */
  dataDir: string;
  /** The generated env file that tests and the CLI read. */
  envFile: string;
  binDir: string;
  temporal: { port: number; uiPort: number; dbFile: string };
  s3: { port: number; masterPort: number; volumePort: number; filerPort: number; dir: string; bucket: string };
}

function portFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name} must be a TCP port number (1-65535), got ${JSON.stringify(raw)}`);
  return port;
}

/**
 * Ports and paths. Environment: DRO_DATA_DIR (default <repo>/.data), DRO_TEMPORAL_PORT (7233),
 * DRO_TEMPORAL_UI_PORT (8233), DRO_S3_PORT (8333; SeaweedFS's master, volume and filer take the next
 * three ports, and their gRPC ports are those plus 10000), DRO_S3_BUCKET (dro-dev).
 */
export function servicesConfig(env: NodeJS.ProcessEnv = process.env): ServicesConfig {
  const dataDir = resolve(env.DRO_DATA_DIR || join(REPO_ROOT, '.data'));
  const s3Port = portFromEnv(env, 'DRO_S3_PORT', 8333);
  if (s3Port + 3 + 10000 > 65535) throw new Error(`DRO_S3_PORT ${s3Port} is too high: SeaweedFS also needs ports up to ${s3Port + 10003}`);
  const bucket = env.DRO_S3_BUCKET || 'dro-dev';
  return {
    dataDir,
    envFile: join(dataDir, 'services.env'),
    binDir: resolve(env.DRO_TOOLS_BIN || join(REPO_ROOT, '.tools', 'venv', 'bin')),
    temporal: {
      port: portFromEnv(env, 'DRO_TEMPORAL_PORT', 7233),
      uiPort: portFromEnv(env, 'DRO_TEMPORAL_UI_PORT', 8233),
      dbFile: join(dataDir, 'temporal', 'temporal.db'),
    },
    s3: { port: s3Port, masterPort: s3Port + 1, volumePort: s3Port + 2, filerPort: s3Port + 3, dir: join(dataDir, 'seaweedfs'), bucket },
  };
}

interface ServiceSpec {
  name: ServiceName;
  binary: string;
  args: string[];
  ports: { port: number; what: string }[];
  /** One readiness probe; resolves true when the service answers properly. */
  probe: () => Promise<boolean>;
  /** Writes what the process reads at start (config files). */
  prepare?: () => void;
  /** Extra environment of the process (secrets it must not take on its command line). */
  env?: Record<string, string>;
}

const pidFile = (cfg: ServicesConfig, name: ServiceName): string => join(cfg.dataDir, 'run', `${name}.pid`);
const logFile = (cfg: ServicesConfig, name: ServiceName): string => join(cfg.dataDir, 'logs', `${name}.log`);

function temporalSpec(cfg: ServicesConfig): ServiceSpec {
  const t = cfg.temporal;
  return {
    name: 'temporal',
    binary: join(cfg.binDir, 'temporal'),
    args: [
      'server', 'start-dev',
      '--ip', '127.0.0.1',
      '--port', String(t.port),
      '--ui-port', String(t.uiPort),
      '--db-filename', t.dbFile,
      '--log-level', 'warn',
    ],
    ports: [
      { port: t.port, what: 'Temporal gRPC (DRO_TEMPORAL_PORT)' },
      { port: t.uiPort, what: 'Temporal Web UI (DRO_TEMPORAL_UI_PORT)' },
    ],
    probe: () => probeTemporal(`127.0.0.1:${t.port}`),
  };
}

function s3Spec(cfg: ServicesConfig, credentials: S3Credentials): ServiceSpec {
  const s = cfg.s3;
  const configFile = join(cfg.dataDir, 'run', 's3-identities.json');
  const grpc = (p: number): number => p + 10000;
  return {
    name: 's3',
    binary: join(cfg.binDir, 'weed'),
    args: [
      'server',
      `-dir=${s.dir}`,
      '-ip=127.0.0.1',
      '-ip.bind=127.0.0.1',
      `-master.port=${s.masterPort}`, `-master.port.grpc=${grpc(s.masterPort)}`,
      '-master.volumeSizeLimitMB=1024',
      `-volume.port=${s.volumePort}`, `-volume.port.grpc=${grpc(s.volumePort)}`,
      '-volume.max=0',
      '-volume.preStopSeconds=0',
      '-filer', `-filer.port=${s.filerPort}`, `-filer.port.grpc=${grpc(s.filerPort)}`,
      '-s3', `-s3.port=${s.port}`, `-s3.port.grpc=${grpc(s.port)}`,
      '-s3.port.iceberg=0', '-s3.port.lance=0',
      // Real S3 never creates a bucket on upload; a dev server that did would hide a wrong bucket name.
      '-s3.autoCreateBucket=false',
      // Identities come from a 0600 file, so the secret never shows in `ps`.
      `-s3.config=${configFile}`,
    ],
    prepare: () => writeS3Identities(configFile, credentials),
    // The filer's HTTP API (DRO_S3_PORT + 3) would serve and accept objects without any credential: with
    // these keys it takes only requests the S3 gateway signed, so the S3 secret guards the data.
    env: {
      WEED_JWT_FILER_SIGNING_KEY: derivedKey(credentials, 'filer-write'),
      WEED_JWT_FILER_SIGNING_READ_KEY: derivedKey(credentials, 'filer-read'),
      WEED_JWT_SIGNING_KEY: derivedKey(credentials, 'volume-write'),
    },
    ports: [
      { port: s.port, what: 'S3 API (DRO_S3_PORT)' },
      ...[s.masterPort, s.volumePort, s.filerPort].map((p) => ({ port: p, what: 'SeaweedFS internal (DRO_S3_PORT + 1..3)' })),
      ...[s.port, s.masterPort, s.volumePort, s.filerPort].map((p) => ({ port: grpc(p), what: 'SeaweedFS gRPC (DRO_S3_PORT + 10000..10003)' })),
    ],
    probe: () => probeS3(cfg, credentials),
  };
}

/** A signing key of its own for each purpose, derived from the S3 secret (stable across restarts, never the secret itself). */
function derivedKey(c: S3Credentials, purpose: string): string {
  return createHmac('sha256', c.secretAccessKey).update(`dro-dev-services/${purpose}`).digest('hex');
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

function writeS3Identities(file: string, c: S3Credentials): void {
  makeDirectoriesSync(dirname(file));
  const identities = {
    identities: [{ name: 'dro', credentials: [{ accessKey: c.accessKeyId, secretKey: c.secretAccessKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }],
  };
  writeFileSync(file, JSON.stringify(identities, null, 2), { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The dev S3 credentials: kept from an earlier env file so stored data stays reachable, else new. */
function devCredentials(cfg: ServicesConfig): S3Credentials {
  if (existsSync(cfg.envFile)) {
    const env = parseEnvFile(readFileSync(cfg.envFile, 'utf8'), cfg.envFile);
    if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) return { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY };
  }
  return { accessKeyId: 'DRO' + randomBytes(8).toString('hex').toUpperCase(), secretAccessKey: randomBytes(30).toString('base64url') };
}

/** Variables a client needs to reach these services. */
export function servicesEnv(cfg: ServicesConfig, c: S3Credentials): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: `127.0.0.1:${cfg.temporal.port}`,
    TEMPORAL_NAMESPACE: 'default',
    DRO_TEMPORAL_UI_URL: `http://127.0.0.1:${cfg.temporal.uiPort}`,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${cfg.s3.port}`,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: c.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
    DRO_S3_URI: `s3://${cfg.s3.bucket}`,
  };
}

function writeEnvFile(cfg: ServicesConfig, vars: Record<string, string>): void {
  makeDirectoriesSync(dirname(cfg.envFile));
  const lines = [
    '# Written by `npm run services:up`: how to reach the local dev services.',
    '# Holds the generated S3 secret: keep it private (mode 0600, git-ignored).',
    ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
  ];
  writeFileSync(cfg.envFile, lines.join('\n') + '\n', { mode: 0o600 });
  chmodSync(cfg.envFile, 0o600);
}

export async function probeTemporal(address: string): Promise<boolean> {
  const { Connection } = await import('@temporalio/client');
  let connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

/** The run search attributes `dro runs` lists by, on the dev server's default namespace (idempotent). */
async function addRunSearchAttributes(cfg: ServicesConfig, log: (line: string) => void): Promise<void> {
  const { Connection } = await import('@temporalio/client');
  const { registerSearchAttributes } = await import('../../workers/search-attributes.js');
  const connection = await Connection.connect({ address: `127.0.0.1:${cfg.temporal.port}`, connectTimeout: 5000 });
  try {
    const added = await registerSearchAttributes(connection, 'default');
    if (added.length > 0) log(`temporal: added search attributes ${added.join(', ')}`);
  } finally {
    await connection.close();
  }
}

async function probeS3(cfg: ServicesConfig, c: S3Credentials): Promise<boolean> {
  if (!(await portAnswers(cfg.s3.port))) return false;
  const { S3BlobStore } = await import('../../storage/s3-store.js');
  const store = new S3BlobStore(`s3://${cfg.s3.bucket}`, {
    endpoint: `http://127.0.0.1:${cfg.s3.port}`,
    region: 'us-east-1',
    credentials: c,
    retryForMs: 1,
    connectTimeoutMs: 1000,
    idleTimeoutMs: 5000,
  });
  try {
    // A write round trip, not just an open port: the S3 gateway accepts before volumes can take data.
    await store.ensureBucket();
    const probe = new TextEncoder().encode('probe');
    await store.put('.dro-probe', probe);
    const back = await store.get('.dro-probe');
    await store.delete('.dro-probe');
    return back.byteLength === probe.byteLength;
  } catch {
    return false;
  } finally {
    await store.close();
  }
}

export function portAnswers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether a loopback port can be bound now (tests choosing ports for private services ask this too). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.once('error', () => resolvePromise(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolvePromise(true)));
  });
}

/** The PID in the service's PID file when that process is alive and is really our binary. */
function runningPid(cfg: ServicesConfig, spec: Pick<ServiceSpec, 'name' | 'binary'>): number | undefined {
  const file = pidFile(cfg, spec.name);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!pidAlive(pid)) return undefined;
  // A PID can be reused after a reboot or crash: only claim it if it runs our binary on our data.
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (cmdline[0] !== spec.binary || !cmdline.some((a) => a.includes(cfg.dataDir))) return undefined;
  } catch {
    // No /proc (not Linux): the liveness check above is all we have.
  }
  return pid;
}

function logTail(cfg: ServicesConfig, name: ServiceName, lines = 15): string {
  try {
    return readFileSync(logFile(cfg, name), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts the service unless it already runs; true when this call started it. */
async function startService(cfg: ServicesConfig, spec: ServiceSpec, log: (line: string) => void, timeoutMs: number): Promise<boolean> {
  if (!existsSync(spec.binary)) throw new Error(`${spec.binary} not found: run \`npm run setup\` first`);
  const running = runningPid(cfg, spec);
  if (running !== undefined) {
    if (await spec.probe()) {
      log(`${spec.name}: already running (pid ${running})`);
      return false;
    }
    log(`${spec.name}: pid ${running} is running but not answering yet; waiting`);
  }
  const spawned = running === undefined;
  if (spawned) {
    for (const { port, what } of spec.ports) {
      if (!(await portIsFree(port))) {
        throw new Error(`${spec.name}: port ${port} (${what}) is already in use by another process; stop that process or choose other ports`);
      }
    }
    makeDirectoriesSync(join(cfg.dataDir, 'run'));
    makeDirectoriesSync(join(cfg.dataDir, 'logs'));
    spec.prepare?.();
    const out = openSync(logFile(cfg, spec.name), 'a');
    // Everything the service writes (data, logs) is private to this user: umask 077 for the child.
    const umask = process.umask(0o077);
    let child;
    try {
      child = spawn(spec.binary, spec.args, { detached: true, stdio: ['ignore', out, out], cwd: cfg.dataDir, env: { ...process.env, ...spec.env } });
    } finally {
      process.umask(umask);
    }
    closeSync(out);
    if (child.pid === undefined) throw new Error(`${spec.name}: could not start ${spec.binary}`);
    child.unref();
    writeFileSync(pidFile(cfg, spec.name), `${child.pid}\n`);
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (runningPid(cfg, spec) === undefined) {
      throw new Error(`${spec.name}: the process exited during start-up. Last lines of ${logFile(cfg, spec.name)}:\n${logTail(cfg, spec.name)}`);
    }
    if (await spec.probe()) return spawned;
    if (Date.now() > deadline) {
      await stopService(cfg, spec, () => undefined);
      throw new Error(`${spec.name}: not answering after ${timeoutMs / 1000}s; stopped it. Last lines of ${logFile(cfg, spec.name)}:\n${logTail(cfg, spec.name)}`);
    }
    await sleep(300);
  }
}

async function stopService(cfg: ServicesConfig, spec: Pick<ServiceSpec, 'name' | 'binary'>, log: (line: string) => void): Promise<void> {
  const file = pidFile(cfg, spec.name);
  const pid = runningPid(cfg, spec);
  if (pid === undefined) {
    if (existsSync(file)) unlinkSync(file);
    log(`${spec.name}: not running`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && runningPid(cfg, spec) !== undefined) await sleep(100);
  if (runningPid(cfg, spec) !== undefined) {
    log(`${spec.name}: pid ${pid} ignored SIGTERM for 20s; sending SIGKILL`);
    process.kill(pid, 'SIGKILL');
    while (runningPid(cfg, spec) !== undefined) await sleep(100);
  }
  if (existsSync(file)) unlinkSync(file);
  log(`${spec.name}: stopped (pid ${pid})`);
}

function specs(cfg: ServicesConfig, which: readonly ServiceName[]): ServiceSpec[] {
  const credentials = devCredentials(cfg);
  return which.map((name) => (name === 'temporal' ? temporalSpec(cfg) : s3Spec(cfg, credentials)));
}

/** Starts the chosen services (idempotent), waits until they answer, and writes the env file. */
export async function servicesUp(
  cfg: ServicesConfig,
  which: readonly ServiceName[] = SERVICE_NAMES,
  log: (line: string) => void = console.log,
  timeoutMs = 120_000,
): Promise<Record<string, string>> {
  makeDirectoriesSync(join(cfg.dataDir, 'run'));
  makeDirectoriesSync(dirname(cfg.temporal.dbFile));
  makeDirectoriesSync(cfg.s3.dir, 0o700);
  // Also a folder an older version made world-readable.
  chmodSync(cfg.s3.dir, 0o700);
  const release = await acquireStartLock(cfg, timeoutMs);
  try {
    const credentials = devCredentials(cfg);
    const vars = servicesEnv(cfg, credentials);
    // Written first so the credentials the server is started with are the ones clients will read.
    writeEnvFile(cfg, vars);
    const startedHere: ServiceSpec[] = [];
    try {
      for (const spec of specs(cfg, which)) {
        const started = Date.now();
        if (await startService(cfg, spec, log, timeoutMs)) startedHere.push(spec);
        if (spec.name === 'temporal') await addRunSearchAttributes(cfg, log);
        log(`${spec.name}: ready in ${((Date.now() - started) / 1000).toFixed(1)}s on 127.0.0.1:${spec.ports[0]!.port}`);
      }
    } catch (err) {
      // Half up is worse than down: stop what this call started, leave what was already running.
      for (const spec of startedHere.reverse()) await stopService(cfg, spec, log);
      throw err;
    }
    return vars;
  } finally {
    release();
  }
}

/**
 * Serialises `up` across processes (two test runs starting at once): the second waits, then finds the
 * services running. A lock left by a dead process is taken over.
 */
async function acquireStartLock(cfg: ServicesConfig, timeoutMs: number): Promise<() => void> {
  const lock = join(cfg.dataDir, 'run', 'up.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        if (existsSync(lock)) unlinkSync(lock);
      };
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(lock, 'utf8').trim());
    if (!pidAlive(holder)) {
      unlinkSync(lock);
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another \`services up\` (pid ${holder}) still holds ${lock}`);
    await sleep(250);
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the chosen services, only processes this script started (by PID file). */
export async function servicesDown(cfg: ServicesConfig, which: readonly ServiceName[] = SERVICE_NAMES, log: (line: string) => void = console.log): Promise<void> {
  for (const name of which) {
    const binary = join(cfg.binDir, name === 'temporal' ? 'temporal' : 'weed');
    await stopService(cfg, { name, binary }, log);
  }
}

export interface ServiceStatus {
  name: ServiceName;
  pid?: number;
  answering: boolean;
  port: number;
}

export async function servicesStatus(cfg: ServicesConfig, which: readonly ServiceName[] = SERVICE_NAMES): Promise<ServiceStatus[]> {
  const out: ServiceStatus[] = [];
  for (const spec of specs(cfg, which)) {
    const pid = runningPid(cfg, spec);
    out.push({ name: spec.name, pid, answering: pid !== undefined && (await spec.probe()), port: spec.ports[0]!.port });
  }
  return out;
}
