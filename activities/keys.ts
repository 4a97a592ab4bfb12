// Deterministic store keys of a run's step artifacts, subsets, metrics and evaluations: a retried or
// replayed activity writes the same key with the same content.
const pad = (n: number): string => String(n).padStart(8, '0');

export const runKeys = {
  stepDir: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/`,
  rollout: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rollout.json`,
  scores: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/scores.json`,
  rewards: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rewards.json`,
  update: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/update.json`,
  subset: (runId: string, version: number): string => `${runId}/subsets/${pad(version)}.json`,
  filterRound: (runId: string, round: number): string => `${runId}/filtering/${pad(round)}.json`,
  metrics: (runId: string, step: number): string => `${runId}/metrics/${pad(step)}.json`,
  metricsPrefix: (runId: string): string => `${runId}/metrics/`,
  evaluation: (runId: string, step: number): string => `${runId}/evaluations/${pad(step)}.json`,
  evaluationsPrefix: (runId: string): string => `${runId}/evaluations/`,
  /** Every hyper-parameter change the run accepted, so a resume from an older checkpoint replays them. */
  hyperparameters: (runId: string): string => `${runId}/hyperparameters.json`,
};
