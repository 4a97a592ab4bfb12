// When a step that keeps failing ends the run: each loss of the policy worker or its state while a step
// is computed is an attempt at that step, counted across rewinds and executions. Without a per-step count,
// a worker that dies at step k after every rewind to an earlier checkpoint would loop for ever, since the
// replayed steps before k each complete.

/** orchestration.maxAttemptsPerStep's default; also the limit of a run whose carried config predates the field. */
export const DEFAULT_MAX_ATTEMPTS_PER_STEP = 3;

export interface FailedAttempt {
  /** Failed attempts by step, this one included (steps not yet through only). */
  failures: Record<string, number>;
  /** Failed attempts at this step so far. */
  attempts: number;
  /** True when the step has used up its attempts and the run fails. */
  exhausted: boolean;
}

/** One more failed attempt at `step`; `limit` undefined means the default. */
export function failedAttempt(failures: Readonly<Record<string, number>> | undefined, step: number, limit: number | undefined): FailedAttempt {
  const attempts = (failures?.[step] ?? 0) + 1;
  return { failures: { ...failures, [step]: attempts }, attempts, exhausted: attempts >= (limit ?? DEFAULT_MAX_ATTEMPTS_PER_STEP) };
}

/** The failures left once `step` is through: its count no longer matters. */
export function stepThrough(failures: Readonly<Record<string, number>> | undefined, step: number): Record<string, number> {
  const { [String(step)]: _through, ...rest } = failures ?? {};
  return rest;
}
