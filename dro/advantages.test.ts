// Group advantages and the informative-group filter: hand-computed tables and edge cases.
import { describe, expect, it } from 'vitest';
import { groupAdvantages } from './advantages.js';
import { filterInformativeGroups } from './group-filter.js';

describe('groupAdvantages', () => {
  it("'std': (r − mean) / (population std + ε)", () => {
    // r = (1, 2, 3, 6): mean 3, deviations (−2, −1, 0, 3), variance (4+1+0+9)/4 = 3.5, std 1.8708286933869707
    const std = Math.sqrt(3.5);
    const adv = groupAdvantages([1, 2, 3, 6]);
    [-2, -1, 0, 3].forEach((d, i) => expect(adv[i]).toBeCloseTo(d / (std + 1e-4), 14));
    expect(adv[0]).toBeCloseTo(-1.0689878278468057, 12);
  });

  it("'none' only centres; ε is configurable", () => {
    expect(groupAdvantages([1, 2, 3, 6], { scale: 'none' })).toEqual([-2, -1, 0, 3]);
    // (−1, 1) / (1 + 1) with ε = 1
    expect(groupAdvantages([0, 2], { epsilon: 1 })).toEqual([-0.5, 0.5]);
  });

  it('a group of one, or of equal rewards, gives exact zeros', () => {
    expect(groupAdvantages([5])).toEqual([0]);
    expect(groupAdvantages([0.1, 0.1, 0.1])).toEqual([0, 0, 0]);
    expect(groupAdvantages([0.1, 0.1, 0.1], { scale: 'none' })).toEqual([0, 0, 0]);
  });

  it('rejects empty, non-finite and unknown options', () => {
    expect(() => groupAdvantages([])).toThrow('rewards is empty');
    expect(() => groupAdvantages([1, Number.NaN])).toThrow('rewards[1] is not a finite number (NaN)');
    expect(() => groupAdvantages([1, 2], { scale: 'rank' as never })).toThrow(`advantage option scale must be one of 'std', 'none', got "rank"`);
    expect(() => groupAdvantages([1, 2], { epsilon: -1 })).toThrow('advantage option epsilon');
    expect(() => groupAdvantages([1, 2], { eps: 1 } as never)).toThrow('unknown advantage option "eps"');
  });
});

describe('filterInformativeGroups', () => {
  it('drops groups whose reward std is below the tolerance and reports the count', () => {
    const groups = [
      { id: 'a', rewards: [1, 1, 1] }, // std 0
      { id: 'b', rewards: [0, 2] }, // std 1
      { id: 'c', rewards: [0.3] }, // a group of one: std 0
      { id: 'd', rewards: [0.5, 0.5 + 1e-9] }, // std 5e-10: a continuous-reward near tie
    ];
    const result = filterInformativeGroups(groups);
    expect(result.kept.map((g) => g.id)).toEqual(['b']);
    expect(result.dropped.map((g) => g.id)).toEqual(['a', 'c', 'd']);
    expect(result.droppedCount).toBe(3);
    expect(result.rewardStd[1]).toBe(1);
    expect(result.rewardStd[3]).toBeCloseTo(5e-10, 15);
    expect(filterInformativeGroups(groups, { minRewardStd: 0 }).droppedCount).toBe(0);
    expect(filterInformativeGroups(groups, { minRewardStd: 2 }).droppedCount).toBe(4);
  });

  it('rejects bad groups and options', () => {
    expect(() => filterInformativeGroups([{ rewards: [] }])).toThrow('groups[0].rewards is empty');
    expect(() => filterInformativeGroups([{ rewards: [1, Infinity] }])).toThrow('groups[0].rewards[1] is not a finite number');
    expect(() => filterInformativeGroups([], { minRewardStd: -1 })).toThrow('group filter option minRewardStd');
    expect(() => filterInformativeGroups([], { tol: 1 } as never)).toThrow('unknown group filter option "tol"');
    expect(filterInformativeGroups([])).toEqual({ kept: [], dropped: [], droppedCount: 0, rewardStd: [] });
  });
});
