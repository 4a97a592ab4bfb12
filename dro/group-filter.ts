// Drops GRPO groups that cannot teach anything: when every chain in a group earns (nearly) the same reward,
// all advantages are ~0. Continuous rewards such as R3 almost never tie exactly, hence a tolerance.
import { assertFiniteVector, assertKnownKeys, assertNumberIn, populationStd } from './stats.js';

export interface GroupFilterOptions {
  /** Groups whose reward population std is below this are dropped. */
  minRewardStd: number;
}

export const DEFAULT_GROUP_FILTER_OPTIONS: Readonly<GroupFilterOptions> = Object.freeze({ minRewardStd: 1e-6 });

export interface GroupFilterResult<T> {
  kept: T[];
  dropped: T[];
  droppedCount: number;
  /** Reward std of every input group, in input order. */
  rewardStd: number[];
}

export function filterInformativeGroups<T extends { readonly rewards: readonly number[] }>(
  groups: readonly T[],
  options: Partial<GroupFilterOptions> = {},
): GroupFilterResult<T> {
  assertKnownKeys(options, Object.keys(DEFAULT_GROUP_FILTER_OPTIONS), 'group filter');
  const o = { ...DEFAULT_GROUP_FILTER_OPTIONS, ...options };
  assertNumberIn(o.minRewardStd, 'group filter option minRewardStd', 0, Infinity);
  const kept: T[] = [];
  const dropped: T[] = [];
  const rewardStd = groups.map((group, g) => {
    assertFiniteVector(group.rewards, `groups[${g}].rewards`, { nonEmpty: true });
    const std = populationStd(group.rewards);
    (std < o.minRewardStd ? dropped : kept).push(group);
    return std;
  });
  return { kept, dropped, droppedCount: dropped.length, rewardStd };
}
