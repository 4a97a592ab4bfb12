// `npm test`'s test run: the services tier in one vitest process and the unit and workflow tiers (with the
// coverage check, then a few services tests that start private servers) in another, at the same time. Vitest runs one file at a time on two cores, and the services
// tests spend much of their time waiting (on Temporal, on heartbeats, on worker processes), so two streams
// finish in far less wall time than one; the two tiers share nothing (the unit and workflow tiers start no
// shared service). Arguments go to both; a `--outputFile.json=<path>` report is written by each and merged.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const args = process.argv.slice(2);
const reportFlag = args.findIndex((a) => a.startsWith('--outputFile.json='));
const report = reportFlag < 0 ? undefined : args[reportFlag]!.slice('--outputFile.json='.length);

/** One vitest process: the projects it runs, and files of them it leaves out or keeps to. */
interface Run {
  name: string;
  projects: string[];
  extra: string[];
  env?: Record<string, string>;
}
/** Runs one after another in one stream. */
interface Stream {
  name: string;
  runs: Run[];
}

/**
 * Services tests that start private servers (so they need nothing the services tier's global setup starts),
 * run after the unit and workflow tiers in their stream, so that the two streams take about as long.
 */
const PRIVATE_SERVICES_MOVED = ['test/run-control.test.ts', 'test/own-data.test.ts', 'test/lora-faults.test.ts'];
// A run given files by the caller runs them where they are; the split by files is for the whole suite.
const filtered = args.some((a, i) => !a.startsWith('-') && (i === 0 || !/^--(reporter|outputFile|project|exclude|testNamePattern|t)$/.test(args[i - 1]!)));
const streams: Stream[] = [
  // vitest.config.ts leaves DRO_TEST_EXCLUDE's files out of the services project (a CLI --exclude does not reach a project's own list).
  { name: 'services', runs: [{ name: 'services', projects: ['services'], extra: [], env: filtered ? {} : { DRO_TEST_EXCLUDE: PRIVATE_SERVICES_MOVED.join(',') } }] },
  {
    name: 'unit',
    runs: [{ name: 'unit', projects: ['unit', 'workflow'], extra: ['--coverage'] }, ...(filtered ? [] : [{ name: 'moved', projects: ['services'], extra: PRIVATE_SERVICES_MOVED }])],
  },
];
const runs = streams.flatMap((s) => s.runs);

function runOne(r: Run, stream: string): Promise<number> {
  // A filter naming files of one tier leaves the others with none: that is not a failure.
  const own = args.map((a, i) => (i === reportFlag ? `--outputFile.json=${report}.${r.name}` : a));
  const child = spawn(process.execPath, [vitest, 'run', '--passWithNoTests', ...r.projects.flatMap((p) => ['--project', p]), ...r.extra, ...own], { cwd: root, env: { ...process.env, ...r.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // Whole lines, each marked with its stream, so the reports can be told apart.
  const relay = (from: NodeJS.ReadableStream, to: NodeJS.WriteStream): void => {
    let rest = '';
    from.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop()!;
      for (const line of lines) to.write(`[${stream}] ${line}\n`);
    });
    from.on('end', () => {
      if (rest !== '') to.write(`[${stream}] ${rest}\n`);
    });
  };
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  return new Promise((done) => child.on('close', (code, signal) => done(code ?? (signal ? 1 : 0))));
}

/** A stream's runs in order; every run runs even after one fails, so the report is whole. */
async function runStream(s: Stream): Promise<number[]> {
  const codes: number[] = [];
  for (const r of s.runs) codes.push(await runOne(r, s.name));
  return codes;
}

interface JsonReport {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numTotalTestSuites: number;
  numPassedTestSuites: number;
  numFailedTestSuites: number;
  numPendingTestSuites: number;
  startTime: number;
  success: boolean;
  testResults: unknown[];
}

/** One report of both streams: counts summed, results side by side, the earlier start. */
function mergeReports(path: string): void {
  const parts: JsonReport[] = [];
  for (const r of runs) {
    try {
      parts.push(JSON.parse(readFileSync(`${path}.${r.name}`, 'utf8')) as JsonReport);
      rmSync(`${path}.${r.name}`);
    } catch {
      // A stream that died before writing its report has failed already; its exit code says so.
    }
  }
  if (parts.length === 0) return;
  const sum = (key: keyof JsonReport): number => parts.reduce((total, p) => total + (p[key] as number), 0);
  const merged = {
    ...parts[0],
    numTotalTests: sum('numTotalTests'),
    numPassedTests: sum('numPassedTests'),
    numFailedTests: sum('numFailedTests'),
    numPendingTests: sum('numPendingTests'),
    numTodoTests: sum('numTodoTests'),
    numTotalTestSuites: sum('numTotalTestSuites'),
    numPassedTestSuites: sum('numPassedTestSuites'),
    numFailedTestSuites: sum('numFailedTestSuites'),
    numPendingTestSuites: sum('numPendingTestSuites'),
    startTime: Math.min(...parts.map((p) => p.startTime)),
    success: parts.length === runs.length && parts.every((p) => p.success),
    testResults: parts.flatMap((p) => p.testResults),
  };
  writeFileSync(path, JSON.stringify(merged));
}

const codes = (await Promise.all(streams.map(runStream))).flat();
if (report) mergeReports(report);
for (const [i, code] of codes.entries()) if (code !== 0) console.error(`[${runs[i]!.name}] vitest exited with ${code}`);
process.exit(codes.some((c) => c !== 0) ? 1 : 0);
