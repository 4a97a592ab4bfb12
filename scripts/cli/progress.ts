// A live progress bar for a training run (cli-progress), fed by the run's `progress` query, until the
// workflow's result arrives (followed across continue-as-new).
import cliProgress from 'cli-progress';
import type { WorkflowHandle } from '@temporalio/client';
import { progressQuery } from '../../workflows/messages.js';
import type { trainingRun, TrainingRunResult } from '../../workflows/training-run.js';

const fmt = (v: number | null | undefined, d = 3): string => (v === null || v === undefined ? '-' : v.toFixed(d));

export async function followRun(handle: WorkflowHandle<typeof trainingRun>, stream: NodeJS.WriteStream): Promise<TrainingRunResult> {
  const bar = new cliProgress.SingleBar(
    { format: 'step {value}/{total} [{bar}] {phase} | reward {reward} | loss {loss} | {rate} steps/h', hideCursor: false, stream, noTTYOutput: true, notTTYSchedule: 10_000 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const poll = async (): Promise<void> => {
    const p = await handle.query(progressQuery).catch(() => undefined);
    if (!p) return;
    const last = p.recent.at(-1);
    const payload = { phase: p.phase, reward: fmt(last?.reward), loss: fmt(last?.loss), rate: p.stepsPerHour ? p.stepsPerHour.toFixed(0) : '-' };
    if (!started) {
      bar.start(p.totalSteps, p.step, payload);
      started = true;
    } else bar.update(p.step, payload);
  };
  const timer = setInterval(() => void poll(), 1000);
  try {
    const result = await handle.result();
    if (started) bar.update(result.steps, { phase: 'done' });
    return result;
  } finally {
    clearInterval(timer);
    if (started) bar.stop();
  }
}
