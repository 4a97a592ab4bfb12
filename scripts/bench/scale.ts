// `npm run bench:scale`: one run on 1 and on 2 policy workers (1 intra-op thread each, so the comparison
// is fair on a small machine), for a quickstart-sized model and for SmolLM2-135M-Instruct (full fine-tune):
// steps/hour, seconds per phase, the share of a step no worker spent in an activity of the run (waiting
// on Temporal: scheduling, round trips, and the control worker's local activities), and the throughput
// model of docs/architecture.md ("One run on many machines") fitted on the 1-worker run and checked
// against the 2-worker one.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readJson, readStepMetrics, runKeys } from '../../activities/records.js';
import type { UnitSummary, UpdateSummary } from '../../activities/types.js';
import { connectClient, startRun, storeFor, type Connected } from '../../cli/client.js';
import { integerOption, UsageError } from '../../cli/options.js';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../../dro/config.js';
import { scoredSequences, unitCount } from '../../dro/units.js';
import { trainingWorkflowId } from '../../workflows/messages.js';
import { ensureSmolLM2 } from '../models/smollm2.js';
import { servicesConfig, servicesStatus, servicesUp } from '../services/dev-services.js';
import { activitySpans, type ActivitySpan } from '../lib/histories.js';
import { listOption, parseChoice, runScript, scriptProgram } from '../lib/command-line.js';
import { WorkerProcess } from '../lib/worker-process.js';
import { median, reportIdle } from './machine.js';

const DETAILS = `
Each (config, workers) pair is one run of --steps DRO steps (no filtering, no evaluation, one checkpoint at
the end) on a control worker and 1 or 2 policy workers started for it; each config's runs are the same
run (same seed, same bits) under two run ids. A step's wall time is from one update's end to the next on
Temporal's clock, so the first step is not counted: steps/hour = 3600 / the median of steps 2..N. The
phases are the metrics' timing (rollout and score: the phase's wall time across its units; update
includes publishing the new policy version). "waiting" is the share of a step's wall time in which no
worker ran an activity of the run. The model: a phase of U units of t seconds each takes ⌈U/N⌉·t on N
workers, plus, on N > 1, the time a worker other than the trainer takes to load the step's policy
version once; the rest of the step (update, publication, local activities, round trips) stays serial.
--json prints one JSON object as stdout's last line (with npm run -s, its only one); progress goes to stderr.`;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

const CONFIGS = ['quickstart', 'smollm2'] as const;
type ConfigName = (typeof CONFIGS)[number];

/** The two configs: the quickstart's model and data, and SmolLM2-135M on the synthetic task; units of 4 sequences, 1 thread per worker. */
async function configOf(name: ConfigName, steps: number, store: string): Promise<RunConfig> {
  const common: RunConfigInput = {
    seed: 0,
    schedule: { totalSteps: steps },
    checkpoint: { store, every: steps },
    filtering: { enabled: false },
    evaluation: { baseAndFinal: false },
    orchestration: { stepsPerExecution: 1000 },
  };
  if (name === 'quickstart') {
    return parseRunConfig({
      ...common,
      model: { intraOpThreads: 1 },
      data: { task: 'synthetic', synthetic: { digits: 2, trainCount: 512, evalCount: 16 } },
      rollout: { promptsPerStep: 8, groupSize: 8, maxNewTokens: 128, temperature: 1, batchSequences: 16 },
      sft: { steps: 100, batchSize: 16, learningRate: 0.003, slipRate: 0.3 },
      optimizer: { learningRate: 0.0003 },
    });
  }
  return parseRunConfig({
    ...common,
    model: { path: await ensureSmolLM2(), tokenizer: 'model', intraOpThreads: 1 },
    data: { task: 'synthetic' },
    rollout: { promptsPerStep: 4, groupSize: 4, maxNewTokens: 32, temperature: 1, topP: 1, batchSequences: 4 },
    sft: { steps: 0 },
    dro: { klBeta: 0.001 },
    optimizer: { learningRate: 1e-5 },
  });
}

interface Measured {
  workers: number;
  stepsPerHour: number;
  secondsPerStep: number;
  stepSeconds: number[];
  /** Medians over the counted steps. */
  phases: { rollout: number; score: number; update: number; publish: number; other: number };
  units: { rollout: number; score: number };
  /** Median share of a step's wall time in which no worker ran an activity of the run. */
  waitingShare: number;
  /** Median seconds a worker other than the trainer spent loading a policy version, per step (0 on one worker). */
  versionLoadSeconds: number;
  /** Units per worker over the counted steps (by Temporal identity). */
  unitsByWorker: Record<string, number>;
}

/** Seconds of [start, end) covered by at least one span. */
function covered(spans: readonly ActivitySpan[], start: number, end: number): number {
  const parts = spans.map((s) => [Math.max(s.started, start), Math.min(s.closed, end)] as const).filter(([a, b]) => b > a);
  parts.sort((x, y) => x[0] - y[0]);
  let total = 0;
  let reach = start;
  for (const [a, b] of parts) {
    if (b <= reach) continue;
    total += b - Math.max(a, reach);
    reach = b;
  }
  return total / 1000;
}

/** Every unit's summary (its worker, its load time) from the run's history, by step. */
async function unitResults(c: Connected, runId: string): Promise<{ step: number; summary: UnitSummary; type: string }[]> {
  const history = await c.client.workflow.getHandle(trainingWorkflowId(runId)).fetchHistory();
  const scheduled = new Map<string, { type: string; step: number }>();
  const out: { step: number; summary: UnitSummary; type: string }[] = [];
  const decode = (data: Uint8Array | null | undefined): unknown => JSON.parse(Buffer.from(data ?? []).toString('utf8'));
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s && /Unit$/.test(s.activityType?.name ?? '')) {
      const input = decode(s.input?.payloads?.[1]?.data) as { step: number };
      scheduled.set(String(e.eventId), { type: s.activityType!.name!, step: input.step });
    }
    const done = e.activityTaskCompletedEventAttributes;
    const unit = done && scheduled.get(String(done.scheduledEventId));
    if (unit) out.push({ ...unit, summary: decode(done.result?.payloads?.[0]?.data) as UnitSummary });
  }
  return out;
}

async function measure(c: Connected, name: ConfigName, workers: number, steps: number): Promise<Measured> {
  const store = await mkdtemp(join(tmpdir(), 'dro-bench-scale-'));
  const started: WorkerProcess[] = [];
  try {
    const config = await configOf(name, steps, store);
    started.push(await WorkerProcess.start('control'));
    started.push(...(await Promise.all(Array.from({ length: workers }, () => WorkerProcess.start('policy')))));
    const runId = `bench-scale-${name}-${workers}w-${Date.now().toString(36)}`;
    log(`run ${runId}: ${steps} steps on ${workers} policy worker(s)`);
    const run = await startRun(c, config, runId);
    await run.handle.result();
    const spans = await activitySpans(c, trainingWorkflowId(runId));
    const updates = spans.filter((s) => s.type === 'update');
    if (updates.length !== steps) throw new Error(`run ${runId}: ${updates.length} update activities for ${steps} steps (a retry would distort the timing)`);
    const windows = updates.slice(1).map((u, i) => ({ step: i + 2, start: updates[i]!.closed, end: u.closed }));
    const stepSeconds = windows.map((w) => (w.end - w.start) / 1000);
    const waitingShare = median(windows.map((w) => 1 - covered(spans, w.start, w.end) / ((w.end - w.start) / 1000)));
    const records = await storeFor(store);
    const metrics = (await readStepMetrics(records, runId)).filter((m) => m.step >= 2);
    const publish = await Promise.all(metrics.map(async (m) => (await readJson<UpdateSummary>(records, runKeys.update(runId, m.step))).publishSeconds ?? 0));
    const phase = (key: string): number => median(metrics.map((m) => m.timing[key]!));
    const units = (await unitResults(c, runId)).filter((u) => u.step >= 2);
    const unitsByWorker: Record<string, number> = {};
    for (const u of units) if (u.summary.stored !== 'found') unitsByWorker[u.summary.worker] = (unitsByWorker[u.summary.worker] ?? 0) + 1;
    const loads = windows.map((w) => units.filter((u) => u.step === w.step).reduce((a, u) => Math.max(a, u.summary.loadSeconds), 0));
    const secondsPerStep = median(stepSeconds);
    const p = { rollout: phase('rollout'), score: phase('score'), update: phase('update'), publish: median(publish) };
    const prompts = config.rollout.promptsPerStep;
    return {
      workers,
      stepsPerHour: 3600 / secondsPerStep,
      secondsPerStep,
      stepSeconds,
      phases: { ...p, other: secondsPerStep - p.rollout - p.score - p.update },
      units: {
        rollout: unitCount(prompts * config.rollout.groupSize, config.rollout.batchSequences),
        score: unitCount(scoredSequences(prompts, config.rollout.groupSize, config.dro.r3.contrast === 'masked'), config.rollout.batchSequences),
      },
      waitingShare,
      versionLoadSeconds: median(loads),
      unitsByWorker,
    };
  } finally {
    await Promise.all(started.map((w) => w.kill('SIGTERM')));
    await rm(store, { recursive: true, force: true });
  }
}

/**
 * The model's steps/hour on `n` workers from a 1-worker measurement: each unit phase shrinks to ⌈U/n⌉
 * of its units' time, a worker other than the trainer loads each new version once (`load`), the rest
 * stays serial.
 */
export function predictStepsPerHour(one: Measured, n: number, load: number): number {
  const phase = (seconds: number, units: number): number => (seconds / units) * Math.ceil(units / n);
  const step = phase(one.phases.rollout, one.units.rollout) + phase(one.phases.score, one.units.score) + one.phases.update + one.phases.other + (n > 1 ? load : 0);
  return 3600 / step;
}

interface Options {
  configs: ConfigName[];
  steps: number;
  json?: boolean;
}

async function main(o: Options): Promise<void> {
  if (o.steps < 3) throw new UsageError('--steps must be at least 3: the first step is not counted, and a median needs two');
  const cfg = servicesConfig();
  const [temporal] = await servicesStatus(cfg, ['temporal']);
  if (!temporal!.answering) await servicesUp(cfg, ['temporal'], (line) => log(`    ${line}`));
  const c = await connectClient();
  try {
    const idle = await reportIdle('before measuring');
    const results = [];
    for (const name of o.configs) {
      const one = await measure(c, name, 1, o.steps);
      const two = await measure(c, name, 2, o.steps);
      const predicted = predictStepsPerHour(one, 2, two.versionLoadSeconds);
      results.push({ config: name, one, two, speedup: two.stepsPerHour / one.stepsPerHour, predictedTwo: predicted, predictionError: predicted / two.stepsPerHour - 1 });
      for (const m of [one, two]) {
        const p = m.phases;
        (o.json ? log : console.log)(
          `${name}, ${m.workers} worker(s): ${m.stepsPerHour.toFixed(1)} steps/hour (${m.secondsPerStep.toFixed(2)} s per step; steps 2..${o.steps}: ${m.stepSeconds.map((s) => s.toFixed(2)).join(', ')}); phases (median s): rollout ${p.rollout.toFixed(2)} in ${m.units.rollout} units, score ${p.score.toFixed(2)} in ${m.units.score} units, update ${p.update.toFixed(2)} (publishing ${p.publish.toFixed(2)}), the rest ${p.other.toFixed(2)}; waiting ${(100 * m.waitingShare).toFixed(0)}%; version load ${m.versionLoadSeconds.toFixed(2)} s; units by worker ${JSON.stringify(m.unitsByWorker)}`,
        );
      }
      (o.json ? log : console.log)(`${name}: 2 workers / 1 = ${(two.stepsPerHour / one.stepsPerHour).toFixed(2)}×; the model predicts ${predicted.toFixed(1)} steps/hour on 2 (measured ${two.stepsPerHour.toFixed(1)}, ${(100 * (predicted / two.stepsPerHour - 1)).toFixed(0)}%)`);
    }
    const after = await reportIdle('at the end of the runs', 500);
    if (o.json) console.log(JSON.stringify({ idle: idle.idle && after.idle, steps: o.steps, results }));
  } finally {
    await c.close();
  }
}

const program = scriptProgram('bench:scale')
  .description('One run on 1 and on 2 policy workers (1 thread each): steps/hour, seconds per phase, waiting on Temporal, and the throughput model checked against the measurement.')
  .addOption(listOption('--configs <list>', 'configs to run, comma-separated: quickstart, smollm2', (v, f) => parseChoice(v, f, CONFIGS)).default([...CONFIGS], CONFIGS.join(',')))
  .addOption(integerOption('--steps <n>', 'DRO steps per run (the first is not counted)', 3).default(4))
  .option('--json', 'print one JSON object instead of lines')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:scale', program);
