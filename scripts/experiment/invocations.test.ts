// The experiment driver's records: written as an invocation goes, read back in start order, refused by
// name when they are not records; and the report's provenance line made from them.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectoryBlobStore } from '../../storage/dir-store.js';
import { InvocationLog, readInvocations, type DriverInvocation } from './invocations.js';
import { parseExperimentConfig, planExperiment, type Plan } from './plan.js';
import { provenance } from './report.js';

const config = parseExperimentConfig(JSON.parse(readFileSync(join(import.meta.dirname, 'reproduce.config.json'), 'utf8')), 'config');
let dir: string;
beforeAll(async () => (dir = await mkdtemp(join(tmpdir(), 'dro-invocations-'))));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('experiment ids', () => {
  it('name the mode, the tag and every run, and nothing else', () => {
    const full = planExperiment(config, 'full');
    expect(full.id).toMatch(/^repro-full-[0-9a-f]{8}$/);
    expect(planExperiment(config, 'full').id).toBe(full.id);
    expect(planExperiment(config, 'full', { store: '/elsewhere' }).id).toBe(full.id);
    expect(planExperiment(config, 'full', { tag: 'x' }).id).toMatch(/^repro-full-x-[0-9a-f]{8}$/);
    expect(planExperiment(config, 'quick').id).not.toBe(full.id);
    const changed = parseExperimentConfig({ ...config, run: { ...config.run, seed: 1, schedule: { ...(config.run.schedule as object), totalSteps: 61 } } }, 'config');
    expect(planExperiment(changed, 'full').id).not.toBe(full.id);
  });
});

describe('driver records', () => {
  const plan: Plan = planExperiment(config, 'quick', { tag: 'unit' });
  const who = { commit: 'abc1234', machine: '2 × test CPU' };

  it('are rewritten after every finished run and at the end, and read back oldest first', async () => {
    const store = new DirectoryBlobStore(join(dir, 'a'));
    const second = new InvocationLog(store, plan, who, new Date('2026-12-06T12:00:00Z'));
    const first = new InvocationLog(store, plan, who, new Date('2026-12-06T11:00:00Z'));
    expect(await readInvocations(store, plan)).toEqual([]);
    await first.finished('run-a');
    await second.finished('run-b');
    let records = await readInvocations(store, plan);
    expect(records.map((r) => [r.startedAt, r.finished, r.complete])).toEqual([
      ['2026-12-06T11:00:00.000Z', ['run-a'], false],
      ['2026-12-06T12:00:00.000Z', ['run-b'], false],
    ]);
    await second.finished('run-c');
    await second.complete();
    records = await readInvocations(store, plan);
    expect(records[1]).toMatchObject({ finished: ['run-b', 'run-c'], complete: true, commit: 'abc1234', machine: '2 × test CPU' });
    expect(records[1]!.seconds).toBeGreaterThanOrEqual(0);
    // Another experiment's records are not this one's.
    expect(await readInvocations(store, planExperiment(config, 'quick', { tag: 'other' }))).toEqual([]);
  });

  it('that are not records are refused by key', async () => {
    const store = new DirectoryBlobStore(join(dir, 'b'));
    await store.put(`experiments/${plan.id}/driver-x.json`, new TextEncoder().encode('{"startedAt": 1}'));
    await expect(readInvocations(store, plan)).rejects.toThrow(`experiments/${plan.id}/driver-x.json in`);
    await store.put(`experiments/${plan.id}/driver-x.json`, new TextEncoder().encode('not json'));
    await expect(readInvocations(store, plan)).rejects.toThrow(/driver-x\.json .* is not a driver record/);
  });
});

describe('the report\'s provenance line', () => {
  const record = (over: Partial<DriverInvocation>): DriverInvocation => ({ startedAt: '2026-12-06T11:00:00.000Z', seconds: 60, commit: 'abc1234', machine: 'm1', finished: [], complete: true, ...over });

  it('sums the invocations\' time, names every commit and machine, and the report\'s own commit when it differs', () => {
    expect(provenance([record({ seconds: 90 })], 'abc1234')).toBe('Ran at commit abc1234 on m1; wall time 1.5 minutes over 1 driver invocation.');
    expect(provenance([record({ seconds: 30, complete: false }), record({ seconds: 150, commit: 'def5678' })], 'fff0000')).toBe(
      'Ran at commit abc1234, def5678 on m1; wall time 3.0 minutes over 2 driver invocations (1 ended before completing every run; each counts until its last finished run); report generated at commit fff0000.',
    );
    expect(provenance([], 'abc1234')).toMatch(/no driver records, so the commit the runs ran at, their wall time and machine are unknown/);
  });
});
