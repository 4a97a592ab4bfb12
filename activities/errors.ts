// The failure types activities raise and the workflow reacts to. Every one is non-retryable: retrying
// cannot fix bad input, a lost policy state needs a re-pin and a rewind, a non-finite update would
// repeat bit for bit, a plan larger than the worker's memory budget would be killed again.
import { ApplicationFailure } from '@temporalio/common';

export type FailureType = 'PolicyStateLost' | 'InvalidConfig' | 'InvalidData' | 'NonFiniteUpdate' | 'CheckpointConflict' | 'InsufficientMemory';

/** Failure types that end the run: the workflow fails with the activity's message. */
export const FATAL_FAILURES: readonly FailureType[] = ['InvalidConfig', 'InvalidData', 'NonFiniteUpdate', 'CheckpointConflict', 'InsufficientMemory'];

export function failure(type: FailureType, message: string, cause?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, cause: cause instanceof Error ? cause : undefined });
}
