// `npm run bench:step`: whole DRO steps on SmolLM2-135M-Instruct (the GGUF the tests fetch, full fine-tune)
// through the real workflow on one all-in-one worker, at TRL's default GRPO shape and a DRO-sized one:
// steps/hour and seconds per phase, and with --trl the TRL GRPOTrainer anchor on the same shapes in the
// same sitting (../shared/anchors/trl_grpo_step.py, or the path given).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseRunConfig, type RunConfig } from '../../dro/config.js';
import { readJson, readStepMetrics, runKeys } from '../../activities/records.js';
import type { UpdateSummary } from '../../activities/types.js';
import { storeFor, startRun } from '../../cli/client.js';
import { integerOption, parseInteger, UsageError } from '../../cli/options.js';
import { trainingWorkflowId } from '../../workflows/messages.js';
import { ensureSmolLM2 } from '../models/smollm2.js';
import { REPO_ROOT } from '../services/dev-services.js';
import { activitySpans } from '../lib/histories.js';
import { withImportedHfDir } from '../lib/hf-dir.js';
import { withLocalWorker } from '../lib/local-run.js';
import { listOption, runScript, scriptProgram } from '../lib/command-line.js';
import { median, reportIdle } from './machine.js';

const DETAILS = `
A shape is PROMPTSxCHAINSxNEW: prompts per step × chains per prompt, up to NEW new tokens each. Each shape
is one run of --steps DRO steps of the synthetic task (no warm start, no filtering, no evaluations, one
checkpoint at the end) with the settings of the TRL anchor: temperature 1, top-p 1, Dr. GRPO loss, KL
weight 0.001, learning rate 1e-5, one optimizer step per batch, all chains of a step in one rollout batch.
A step's wall time is from one update's end to the next (Temporal's clock, from the run's history), so
the first step (session builds) is not counted: steps/hour = 3600 / the median of steps 2..N, as the
anchor takes the median of its steps 2..N. The phases are the activities' own timings (metrics records);
"update scoring" is the old and reference-policy log-probs inside the update.
--trl PYTHON runs the anchor with that Python (torch, transformers, trl, datasets) on an HF directory
imported from the same GGUF, after each of ours. --json prints { "idle", "shapes": [{ "shape", "dro",
"trl", "ratio" }] } as stdout's last line (with npm run -s, its only one); progress goes to stderr.`;

interface Shape {
  prompts: number;
  chains: number;
  newTokens: number;
}

const shapeName = (s: Shape): string => `${s.prompts}x${s.chains}x${s.newTokens}`;

function parseShape(value: string, flag: string): Shape {
  const parts = value.split('x');
  if (parts.length !== 3) throw new UsageError(`${flag}: '${value}' is not PROMPTSxCHAINSxNEW (e.g. 4x8x128)`);
  const [prompts, chains, newTokens] = parts.map((p) => parseInteger(p, flag, 1)) as [number, number, number];
  if (chains < 2) throw new UsageError(`${flag}: '${value}' has ${chains} chain per prompt; GRPO needs at least 2`);
  return { prompts, chains, newTokens };
}

interface Phases {
  rollout: number;
  score: number;
  reward: number;
  update: number;
  updateScoring: number;
}

interface OursResult {
  stepsPerHour: number;
  secondsPerStep: number;
  stepSeconds: number[];
  /** Medians over the counted steps. */
  phases: Phases;
  /** Reference scoring (the R3 pass) over the rollout's time, median over the counted steps. */
  scoreOverRollout: number;
  generatedTokensPerStep: number;
  /** The worker process's peak RSS over the whole run (Linux VmHWM; NaN elsewhere). */
  workerPeakRssBytes: number;
}

/** A live process's peak resident set (VmHWM), which outlasts the step that set it. */
function peakRss(pid: number): number {
  try {
    const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return kib ? Number(kib[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

interface TrlResult {
  secondsPerStep: number;
  stepsPerHour: number;
  line: string;
}

function runConfig(gguf: string, shape: Shape, steps: number, store: string): RunConfig {
  return parseRunConfig({
    seed: 0,
    model: { path: gguf, tokenizer: 'model' },
    data: { task: 'synthetic' },
    rollout: { promptsPerStep: shape.prompts, groupSize: shape.chains, maxNewTokens: shape.newTokens, temperature: 1, topP: 1, batchSequences: shape.prompts * shape.chains },
    sft: { steps: 0 },
    dro: { reward: 'r3', klBeta: 0.001 },
    optimizer: { learningRate: 1e-5 },
    schedule: { totalSteps: steps },
    checkpoint: { store, every: steps },
    filtering: { enabled: false },
    evaluation: { baseAndFinal: false },
  });
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function runOurs(gguf: string, shape: Shape, steps: number): Promise<OursResult> {
  const store = await mkdtemp(join(tmpdir(), 'dro-bench-step-'));
  try {
    const config = runConfig(gguf, shape, steps, store);
    return await withLocalWorker(`bench-step-${shapeName(shape)}`, async ({ client, workerPid }) => {
      const runId = `bench-step-${shapeName(shape)}-${Date.now().toString(36)}`;
      const run = await startRun(client, config, runId);
      log(`run ${runId}: ${steps} steps of ${shape.prompts} prompts × ${shape.chains} chains, up to ${shape.newTokens} new tokens`);
      await run.handle.result();
      const workerPeakRssBytes = peakRss(workerPid);
      const updates = (await activitySpans(client, trainingWorkflowId(runId))).filter((s) => s.type === 'update');
      if (updates.length !== steps) throw new Error(`run ${runId}: ${updates.length} update activities for ${steps} steps (a retry would distort the timing)`);
      const stepSeconds = updates.slice(1).map((u, i) => (u.closed - updates[i]!.closed) / 1000);
      const records = await storeFor(store);
      const metrics = (await readStepMetrics(records, runId)).filter((m) => m.step >= 2);
      const updateScoring = await Promise.all(metrics.map(async (m) => (await readJson<UpdateSummary>(records, runKeys.update(runId, m.step))).scoreSeconds));
      const phase = (key: keyof Omit<Phases, 'updateScoring'>): number => median(metrics.map((m) => m.timing[key]!));
      const secondsPerStep = median(stepSeconds);
      return {
        stepsPerHour: 3600 / secondsPerStep,
        secondsPerStep,
        stepSeconds,
        phases: { rollout: phase('rollout'), score: phase('score'), reward: phase('reward'), update: phase('update'), updateScoring: median(updateScoring) },
        scoreOverRollout: median(metrics.map((m) => m.timing.score! / m.timing.rollout!)),
        generatedTokensPerStep: median(metrics.map((m) => m.tokens.generated)),
        workerPeakRssBytes,
      };
    }, log);
  } finally {
    await rm(store, { recursive: true, force: true });
  }
}

function runTrl(python: string, script: string, modelDir: string, shape: Shape, steps: number): TrlResult {
  const child = spawnSync(python, [script, modelDir, String(shape.prompts), String(shape.chains), String(shape.newTokens), String(steps)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  if (child.status !== 0) throw new Error(`the TRL anchor failed for ${shapeName(shape)} (exit ${child.status ?? child.signal})`);
  const line = child.stdout.trim().split('\n').find((l) => l.startsWith('trl '));
  const seconds = line && /: ([0-9.]+) s\/step/.exec(line);
  if (!seconds) throw new Error(`the TRL anchor printed no 'trl … s/step' line for ${shapeName(shape)}:\n${child.stdout.slice(-2000)}`);
  const secondsPerStep = Number(seconds[1]);
  return { secondsPerStep, stepsPerHour: 3600 / secondsPerStep, line };
}

interface Options {
  shapes: Shape[];
  steps: number;
  trl?: string;
  trlScript: string;
  json?: boolean;
}

async function main(o: Options): Promise<void> {
  if (o.steps < 2) throw new UsageError('--steps must be at least 2: the first step is not counted');
  const trlScript = resolve(o.trlScript);
  if (o.trl && !existsSync(trlScript)) throw new UsageError(`--trl-script: ${trlScript} does not exist`);
  const gguf = await ensureSmolLM2();
  await withImportedHfDir(gguf, o.trl !== undefined, async (modelDir) => {
    const idle = await reportIdle('before measuring');
    const results: { shape: string; dro: OursResult; trl?: TrlResult; ratio?: number }[] = [];
    for (const shape of o.shapes) {
      const dro = await runOurs(gguf, shape, o.steps);
      const trl = o.trl ? runTrl(o.trl, trlScript, modelDir!, shape, o.steps) : undefined;
      const ratio = trl ? dro.stepsPerHour / trl.stepsPerHour : undefined;
      results.push({ shape: shapeName(shape), dro, ...(trl ? { trl, ratio } : {}) });
      const p = dro.phases;
      const lines = [
        `${shapeName(shape)}: ours ${dro.stepsPerHour.toFixed(1)} steps/hour (${dro.secondsPerStep.toFixed(1)} s per step; steps 2..${o.steps}: ${dro.stepSeconds.map((s) => s.toFixed(1)).join(', ')})`,
        `  phases (median s): rollout ${p.rollout.toFixed(1)}, reference scoring ${p.score.toFixed(1)} (${(100 * dro.scoreOverRollout).toFixed(0)}% of the rollout), rewards ${p.reward.toFixed(2)}, update ${p.update.toFixed(1)} (of which old and reference-policy scoring ${p.updateScoring.toFixed(1)}); worker peak RSS ${(dro.workerPeakRssBytes / 2 ** 30).toFixed(2)} GiB`,
        ...(trl ? [`  TRL: ${trl.stepsPerHour.toFixed(1)} steps/hour (${trl.secondsPerStep.toFixed(1)} s per step): ours / TRL = ${ratio!.toFixed(2)}×`, `  ${trl.line}`] : []),
      ];
      for (const l of lines) (o.json ? log : console.log)(l);
    }
    const after = await reportIdle('at the end of the run', 500);
    if (o.json) console.log(JSON.stringify({ idle: idle.idle && after.idle, model: 'SmolLM2-135M-Instruct', steps: o.steps, shapes: results }));
  });
}

const program = scriptProgram('bench:step')
  .description("Whole DRO steps (full fine-tune of SmolLM2-135M-Instruct) through the real workflow on one worker: steps/hour and seconds per phase, optionally beside TRL's GRPOTrainer on the same shapes.")
  .addOption(listOption('--shapes <list>', 'PROMPTSxCHAINSxNEW shapes, comma-separated', parseShape).default([parseShape('4x8x128', '--shapes'), parseShape('2x16x256', '--shapes')], '4x8x128,2x16x256'))
  .addOption(integerOption('--steps <n>', 'DRO steps per shape (the first is not counted)', 2).default(4))
  .option('--trl <python>', "also run TRL's anchor with this Python (e.g. ~/torch-anchor/bin/python)")
  .option('--trl-script <path>', 'the TRL anchor script', join(REPO_ROOT, '..', 'shared', 'anchors', 'trl_grpo_step.py'))
  .option('--json', 'print one JSON object instead of lines')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:step', program);
