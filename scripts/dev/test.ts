// `npm test`'s test run: the services tier in one vitest process and the unit and workflow tiers (with the
// coverage check) in another, at the same time. Vitest runs one file at a time on two cores, and the services
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

interface Stream {
  name: string;
  projects: string[];
  extra: string[];
}
// A filter naming files of one tier leaves the other with none: that is not a failure.
const streams: Stream[] = [
  { name: 'services', projects: ['services'], extra: [] },
  { name: 'unit', projects: ['unit', 'workflow'], extra: ['--coverage'] },
];

function runStream(s: Stream): Promise<number> {
  const own = args.map((a, i) => (i === reportFlag ? `--outputFile.json=${report}.${s.name}` : a));
  const child = spawn(process.execPath, [vitest, 'run', '--passWithNoTests', ...s.projects.flatMap((p) => ['--project', p]), ...s.extra, ...own], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  // Whole lines, each marked with its stream, so the two reports can be told apart.
  const relay = (from: NodeJS.ReadableStream, to: NodeJS.WriteStream): void => {
    let rest = '';
    from.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop()!;
      for (const line of lines) to.write(`[${s.name}] ${line}\n`);
    });
    from.on('end', () => {
      if (rest !== '') to.write(`[${s.name}] ${rest}\n`);
    });
  };
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  return new Promise((done) => child.on('close', (code, signal) => done(code ?? (signal ? 1 : 0))));
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
  for (const s of streams) {
    try {
      parts.push(JSON.parse(readFileSync(`${path}.${s.name}`, 'utf8')) as JsonReport);
      rmSync(`${path}.${s.name}`);
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
    success: parts.length === streams.length && parts.every((p) => p.success),
    testResults: parts.flatMap((p) => p.testResults),
  };
  writeFileSync(path, JSON.stringify(merged));
}

const codes = await Promise.all(streams.map(runStream));
if (report) mergeReports(report);
for (const [i, code] of codes.entries()) if (code !== 0) console.error(`[${streams[i]!.name}] vitest exited with ${code}`);
process.exit(codes.some((c) => c !== 0) ? 1 : 0);
