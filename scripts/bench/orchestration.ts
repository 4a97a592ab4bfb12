// `npm run bench:orchestration`: what Temporal costs a training run. Runs the quickstart config on the
// local Temporal with a control worker and a policy worker of its own, then reads the run's histories:
// DRO steps per hour, the share of the loop's wall time spent outside activity execution (scheduling,
// dispatch, workflow tasks), and, after SIGKILLing the policy worker, the time to the next completed step.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { integerOption, UsageError } from '../../cli/options.js';
import { runScript, scriptProgram } from '../lib/command-line.js';
import { connectClient, queryProgress, readRunConfig, startRun } from '../../cli/client.js';
import { WorkerProcess } from '../lib/worker-process.js';
import { activitySpans } from '../lib/histories.js';
import { trainingWorkflowId } from '../../workflows/messages.js';

const DETAILS = `
Runs scripts/quickstart/quickstart.config.json with --steps DRO steps (and --sft-steps warm-start steps, default the
config's; --prompts-per-step, default the config's, scales the step) on the Temporal of TEMPORAL_ADDRESS (default: the local services), with workers it starts.
Measures the undisturbed steps 1..--kill-after from the run's histories, then SIGKILLs the policy worker,
starts another, and times the recovery. Prints figures only.`;

interface Options {
  steps: number;
  killAfter: number;
  sftSteps?: number;
  promptsPerStep?: number;
}

async function main({ steps, killAfter, sftSteps, promptsPerStep }: Options): Promise<void> {
  if (killAfter >= steps) throw new UsageError(`--kill-after (${killAfter}) must be below --steps (${steps})`);
  const store = await mkdtemp(join(tmpdir(), 'dro-bench-orchestration-'));
  const base = await readRunConfig(join(import.meta.dirname, '..', 'quickstart', 'quickstart.config.json'));
  const config = {
    ...base,
    sft: { ...base.sft, steps: sftSteps ?? base.sft.steps },
    schedule: { ...base.schedule, totalSteps: steps },
    rollout: { ...base.rollout, promptsPerStep: promptsPerStep ?? base.rollout.promptsPerStep },
    checkpoint: { ...base.checkpoint, store },
    evaluation: { ...base.evaluation, baseAndFinal: false },
  };
  const c = await connectClient();
  const control = await WorkerProcess.start('control');
  let policy = await WorkerProcess.start('policy');
  try {
    const runId = `bench-orchestration-${Date.now().toString(36)}`;
    const run = await startRun(c, config, runId);
    console.log(`run ${runId}: ${config.sft.steps} warm-start steps, ${steps} DRO steps (${config.rollout.promptsPerStep} prompts × ${config.rollout.groupSize} chains, up to ${config.rollout.maxNewTokens} new tokens)`);
    const progress = async () => (await queryProgress(c, runId)) ?? { step: 0, stepsCompleted: 0 };
    for (;;) {
      const p = await progress();
      if (p.step >= killAfter) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const before = await progress();
    await policy.kill('SIGKILL');
    const killedAt = Date.now();
    policy = await WorkerProcess.start('policy');
    const restarted = Date.now();
    let nextStep = NaN;
    let caughtUp = NaN;
    for (;;) {
      const p = await progress();
      if (Number.isNaN(nextStep) && p.stepsCompleted > before.stepsCompleted) nextStep = Date.now();
      if (p.step > before.step) {
        caughtUp = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const result = await run.handle.result();

    // The undisturbed loop: from the first rollout's scheduling to the end of step killAfter's last activity.
    const spans = await activitySpans(c, trainingWorkflowId(runId));
    const rollouts = spans.filter((s) => s.type === 'rollout');
    const updates = spans.filter((s) => s.type === 'update');
    const from = rollouts[0]!.scheduled;
    // The end of step killAfter's update (its metrics record is a local activity without events).
    const to = updates[killAfter - 1]!.closed;
    const inside = spans.filter((s) => s.scheduled >= from && s.closed <= to);
    const busy = inside.reduce((a, s) => a + (s.closed - s.started), 0);
    const wall = to - from;
    const perType = new Map<string, number>();
    for (const s of inside) perType.set(s.type, (perType.get(s.type) ?? 0) + (s.closed - s.started));
    console.log(`\nsteps 1..${killAfter} (undisturbed): ${(wall / 1000).toFixed(1)} s wall, ${((killAfter * 3_600_000) / wall).toFixed(0)} steps/hour, ${(wall / killAfter / 1000).toFixed(2)} s per step`);
    console.log(`  activity execution: ${(busy / 1000).toFixed(1)} s; outside activities (Temporal scheduling and overhead): ${((wall - busy) / 1000).toFixed(2)} s = ${((100 * (wall - busy)) / wall).toFixed(2)}% of wall time`);
    console.log(`  (the local activities — batch, rewards, metrics — leave no start/end events, so their execution counts as overhead here: an upper bound)`);
    console.log(`  per activity type: ${[...perType].map(([t, v]) => `${t} ${(v / 1000).toFixed(1)} s`).join(', ')}`);
    console.log(`\npolicy worker SIGKILLed at step ${before.step}: next completed step after ${((nextStep - killedAt) / 1000).toFixed(1)} s (a new worker was polling after ${((restarted - killedAt) / 1000).toFixed(1)} s), step ${before.step + 1} reached after ${((caughtUp - killedAt) / 1000).toFixed(1)} s`);
    console.log(`  detection: heartbeat timeout ${config.orchestration.heartbeatSeconds} s, then ${config.orchestration.pinnedStartSeconds} s schedule-to-start on the dead worker's queue; the run re-pinned ${result.repins} time(s) and replayed ${result.replayedSteps} step(s) from checkpoint`);
  } finally {
    await policy.kill('SIGTERM');
    await control.kill('SIGTERM');
    await c.close();
    await rm(store, { recursive: true, force: true });
  }
}

const program = scriptProgram('bench:orchestration')
  .description("What Temporal costs a training run: DRO steps per hour, the share of the loop's wall time spent outside activity execution, and the time from SIGKILLing the policy worker to the next completed step.")
  .addOption(integerOption('--steps <n>', 'DRO steps', 1).default(30))
  .addOption(integerOption('--kill-after <n>', 'the step after which the policy worker is killed; below --steps', 1).default(20))
  .addOption(integerOption('--sft-steps <n>', "warm-start steps (default: the config's)", 0))
  .addOption(integerOption('--prompts-per-step <n>', "prompts per step, which scales the step (default: the config's)", 1))
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:orchestration', program);
