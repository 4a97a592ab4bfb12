// Two real processes commit the same checkpoint step at the same moment (a zombie activity attempt next
// to its retry), on the directory store and on SeaweedFS: with different content exactly one wins and
// the other is refused, every time, and the step is whole with the winner's content; with the same
// content both succeed.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { listCheckpoints, loadCheckpoint } from '../storage/checkpoints.js';
import { openBlobStore } from '../storage/open.js';
import { patternBytes, sha256 } from './blob-store-suite.js';
import { storeKinds } from './services-env.js';

const child = join(import.meta.dirname, 'fixtures', 'race-child.ts');
const tsx = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsx');
const TRIALS = 24;

class Racer {
  private readonly lines: AsyncIterator<string>;
  private readonly rl: Interface;
  constructor(private readonly proc: ChildProcessWithoutNullStreams) {
    this.rl = createInterface({ input: proc.stdout });
    this.lines = this.rl[Symbol.asyncIterator]();
  }
  static async start(uri: string): Promise<Racer> {
    const racer = new Racer(spawn(tsx, [child, uri, 'race'], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env }));
    expect((await racer.lines.next()).value).toBe('ready');
    return racer;
  }
  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }
  async answer(): Promise<string> {
    const next = await this.lines.next();
    if (next.done) throw new Error('the racer exited');
    return next.value;
  }
  async stop(): Promise<void> {
    this.proc.stdin.end();
    await new Promise((r) => this.proc.once('exit', r));
  }
}

const stores = storeKinds('race');

describe.each(stores)('two processes commit one step at once: %s', (_name, makeUri) => {
  it(`different content: exactly one success and one clear refusal in each of ${TRIALS} trials, and the step is the winner's`, async () => {
    const uri = await makeUri();
    const [a, b] = await Promise.all([Racer.start(uri), Racer.start(uri)]);
    const store = await openBlobStore(uri);
    try {
      for (let step = 1; step <= TRIALS; step++) {
        const seeds = [step * 10, step * 10 + 5];
        // Both lines go out in the same tick: the commits overlap.
        a.send(`trial ${step} ${seeds[0]}`);
        b.send(`trial ${step} ${seeds[1]}`);
        const answers = await Promise.all([a.answer(), b.answer()]);
        const won = answers.map((x) => x === `committed ${step}`);
        expect(won.filter(Boolean).length, `trial ${step}: ${answers.join(' | ')}`).toBe(1);
        const loser = answers[won.indexOf(false)]!;
        expect(loser, `trial ${step}`).toMatch(new RegExp(`^refused ${step} checkpoint race/checkpoints/${String(step).padStart(8, '0')}/ is already committed with different content.*; refusing to overwrite it$`));
        const loaded = await loadCheckpoint(store, 'race', step);
        const seed = seeds[won.indexOf(true)]!;
        expect(loaded.state, `trial ${step}`).toEqual({ step, seed });
        expect(sha256(loaded.files['model.safetensors']!)).toBe(sha256(patternBytes(1024 * 1024, seed)));
        expect(sha256(loaded.files['optimizer.safetensors']!)).toBe(sha256(patternBytes(256 * 1024, seed + 1)));
      }
      expect((await listCheckpoints(store, 'race')).every((c) => c.valid)).toBe(true);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await store.close();
    }
  }, 300_000);

  it('the same content: both succeed (a retry next to its zombie is harmless)', async () => {
    const uri = await makeUri();
    const [a, b] = await Promise.all([Racer.start(uri), Racer.start(uri)]);
    const store = await openBlobStore(uri);
    try {
      for (let step = 1; step <= 6; step++) {
        a.send(`trial ${step} 7`);
        b.send(`trial ${step} 7`);
        expect(await Promise.all([a.answer(), b.answer()])).toEqual([`committed ${step}`, `committed ${step}`]);
        expect((await loadCheckpoint(store, 'race', step)).state).toEqual({ step, seed: 7 });
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await store.close();
    }
  }, 300_000);
});
