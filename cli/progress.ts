// Following a training run: a live progress bar (cli-progress) on a terminal, one plain line per step
// otherwise, fed by the run's `progress` query until the workflow's result arrives (followed across
// continue-as-new). Ctrl-C stops following, never the run.
import cliProgress from 'cli-progress';
import type { WorkflowHandle } from '@temporalio/client';
import type { HyperparameterValues } from '../dro/hyperparameters.js';
import { progressQuery, type TrainingProgress } from '../workflows/messages.js';
import type { trainingRun, TrainingRunResult } from '../workflows/training-run.js';

const fmt = (v: number | null | undefined, d = 3): string => (v === null || v === undefined ? '-' : v.toFixed(d));

/** 1h 02m, 3m 05s, 42s. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** The figures one progress report shows: the bar's payload and the plain line use the same ones. */
function figures(p: TrainingProgress): Record<string, string> {
  const last = p.recent.at(-1);
  const state = p.stopping ? 'stopping' : p.paused ? 'paused' : p.phase;
  return { state, reward: fmt(last?.reward), loss: fmt(last?.loss, 4), rate: p.stepsPerHour ? p.stepsPerHour.toFixed(0) : '-', eta: formatDuration(p.etaSeconds) };
}

export function progressLine(p: TrainingProgress): string {
  const f = figures(p);
  return `step ${p.step}/${p.totalSteps} ${f.state} | reward ${f.reward} | loss ${f.loss} | ${f.rate} steps/h | ETA ${f.eta}`;
}

/** "learningRate 2e-5, temperature 0.7" for a change. */
export function describeChange(change: HyperparameterValues): string {
  return Object.entries(change)
    .filter(([k, v]) => k !== 'fromStep' && v !== undefined)
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
}

export type FollowOutcome = { ended: true; result: TrainingRunResult } | { ended: false };

/**
 * Shows the run's progress until it ends (the result, or the run's failure thrown) or the user presses
 * Ctrl-C (ended: false; the run goes on).
 */
/** How often `dro follow` asks who polls the run's queues. */
const POLLERS_EVERY_MS = 15_000;

/**
 * Follows a run to its end; `warnings`, when given, says what is wrong with the workers serving it (e.g.
 * nobody polls its queues): each new answer is written once, between progress lines.
 */
export async function followRun(started: WorkflowHandle<typeof trainingRun>, stream: NodeJS.WriteStream, warnings?: (p: TrainingProgress | undefined) => Promise<string[]>): Promise<FollowOutcome> {
  // Without a run id: queries and the result go to the newest execution after a continue-as-new.
  const handle = started.client.getHandle<typeof trainingRun>(started.workflowId);
  const tty = stream.isTTY === true;
  const bar = tty
    ? new cliProgress.SingleBar(
        { format: 'step {value}/{total} [{bar}] {state} | reward {reward} | loss {loss} | {rate} steps/h | ETA {eta}', hideCursor: false, stream, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let barStarted = false;
  let lastLine = '';
  const show = (p: TrainingProgress): void => {
    if (bar) {
      if (!barStarted) bar.start(p.totalSteps, p.step, figures(p));
      else bar.update(p.step, figures(p));
      barStarted = true;
      return;
    }
    const line = progressLine(p);
    // A line per step (and per pause, stop or phase of note), not per poll.
    const key = `${p.step} ${figures(p).state === 'paused' || p.stopping ? figures(p).state : ''}`;
    if (key !== lastLine) stream.write(`${line}\n`);
    lastLine = key;
  };
  let latest: TrainingProgress | undefined;
  // The calls in flight, awaited before returning: one still retrying when the caller closes its connection would throw from a timer.
  const inFlight = new Set<Promise<void>>();
  const track = (call: () => Promise<void>): void => {
    const p = call().finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const poll = async (): Promise<void> => {
    const p = await handle.query(progressQuery).catch(() => undefined);
    if (p) show(p);
    latest = p ?? latest;
  };
  let said = '';
  const checkWorkers = async (): Promise<void> => {
    const lines = (await warnings?.(latest).catch(() => [])) ?? [];
    const text = lines.join('\n');
    if (text && text !== said) stream.write(`${tty ? '\n' : ''}${lines.map((l) => `warning: ${l}`).join('\n')}\n`);
    said = text;
  };
  let detach: () => void = () => undefined;
  const interrupted = new Promise<FollowOutcome>((resolve) => {
    detach = () => resolve({ ended: false });
  });
  const onSigint = (): void => detach();
  process.on('SIGINT', onSigint);
  const timer = setInterval(() => track(poll), 1000);
  const workersTimer = warnings ? setInterval(() => track(checkWorkers), POLLERS_EVERY_MS) : undefined;
  track(() => poll().then(() => checkWorkers()));
  try {
    return await Promise.race([handle.result().then((result): FollowOutcome => ({ ended: true, result })), interrupted]);
  } finally {
    clearInterval(timer);
    if (workersTimer) clearInterval(workersTimer);
    process.off('SIGINT', onSigint);
    await Promise.all(inFlight);
    if (bar && barStarted) bar.stop();
  }
}
