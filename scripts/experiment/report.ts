// The reproduction report, generated from the runs' own records in their store (metrics per step,
// evaluations, filtering rounds), never from what the driver remembers: rerunning it on the same records
// gives the same numbers, and a changed record changes the report. Tables in the shape of the paper's
// Table 2 (mean ± standard deviation over seeds), reasoning length, the filtering arm's compute to a
// target accuracy, a verdict per claim with the numbers that decide it, and charts (SVG and PNG).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { readEvaluations, readFilterRounds, readStepMetrics, type EvaluationRecord, type StepMetricsRecord } from '../../activities/records.js';
import { makeDirectories } from '../../storage/local-files.js';
import { FONT, renderSpec, svgToPng } from '../../cli/commands/report.js';
import { storeFor } from '../../cli/client.js';
import { readInvocations, type DriverInvocation } from './invocations.js';
import { ARM_NAMES, ARMS, type Plan, type PlannedRun } from './plan.js';

interface RunRecords {
  run: PlannedRun;
  metrics: StepMetricsRecord[];
  evaluations: EvaluationRecord[];
  /** Each filtering round's step and compute. */
  rounds: { step: number; tokens: number }[];
}

async function readRecords(plan: Plan, uri: string): Promise<{ runs: RunRecords[]; invocations: DriverInvocation[] }> {
  const store = await storeFor(uri);
  try {
    const runs: RunRecords[] = [];
    for (const run of plan.runs) {
      const rounds = (await readFilterRounds(store, run.runId)).map((r) => ({ step: r.step, tokens: (r.tokens?.generated ?? 0) + (r.tokens?.scored ?? 0) }));
      runs.push({ run, metrics: await readStepMetrics(store, run.runId), evaluations: await readEvaluations(store, run.runId), rounds });
    }
    return { runs, invocations: await readInvocations(store, plan) };
  } finally {
    await store.close();
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Sample standard deviation; 0 for a single value. */
const sd = (xs: number[]): number => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const fmt = (xs: number[], digits = 3): string => (xs.length === 0 ? '–' : xs.length === 1 ? xs[0]!.toFixed(digits) : `${mean(xs).toFixed(digits)} ± ${sd(xs).toFixed(digits)}`);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const stepTokens = (m: StepMetricsRecord): number => m.tokens.generated + m.tokens.scored + m.tokens.trained;

const finalEval = (r: RunRecords): EvaluationRecord | undefined => r.evaluations.at(-1);
const passKeys = (records: RunRecords[]): string[] =>
  [...new Set(records.flatMap((r) => r.evaluations.flatMap((e) => Object.keys(e.metrics).filter((k) => /^pass@\d+$/.test(k)))))].sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));

/** Mean completion length over the first and the last 5 recorded steps (fewer in short runs, so the two never overlap). */
function lengths(r: RunRecords): { start: number; end: number } | undefined {
  const xs = r.metrics.map((m) => m.completionTokens);
  const n = Math.min(5, Math.floor(xs.length / 2));
  if (n === 0) return undefined;
  return { start: mean(xs.slice(0, n)), end: mean(xs.slice(-n)) };
}

/** Training tokens (rollout + scoring + update, and filtering rounds) spent up to and including `step`. */
function tokensThrough(r: RunRecords, step: number): number {
  return r.metrics.filter((m) => m.step <= step).reduce((a, m) => a + stepTokens(m), 0) + r.rounds.filter((x) => x.step <= step).reduce((a, x) => a + x.tokens, 0);
}

/** The first evaluated step at which pass@1 reaches `target`, and the tokens spent until then. */
function reach(r: RunRecords, target: number): { step: number; tokens: number } | undefined {
  const e = r.evaluations.find((x) => x.step > 0 && (num(x.metrics['pass@1']) ?? -1) >= target);
  return e && { step: e.step, tokens: tokensThrough(r, e.step) };
}

type Verdict = 'held' | 'did not hold' | 'inconclusive';

/**
 * Whether a − b is beyond twice its standard error, in which direction, or neither. Paired by seed: arms
 * of one seed share its warm start and held-out set, which is where most of the spread between seeds
 * comes from, so the seed's own difference is what varies by chance.
 */
function compare(a: Map<number, number>, b: Map<number, number>): { diff: number; se: number; sign: 1 | -1 | 0; enough: boolean; n: number } {
  const diffs = [...a].filter(([seed]) => b.has(seed)).map(([seed, x]) => x - b.get(seed)!);
  if (diffs.length === 0) return { diff: Number.NaN, se: Number.NaN, sign: 0, enough: false, n: 0 };
  const diff = mean(diffs);
  const se = sd(diffs) / Math.sqrt(diffs.length);
  const enough = diffs.length >= 2;
  return { diff, se, sign: !enough ? 0 : diff > 2 * se ? 1 : diff < -2 * se ? -1 : 0, enough, n: diffs.length };
}

function chart(name: string, title: string, y: string, rows: { step: number; arm: string; value: number }[]): { name: string; spec: TopLevelSpec } {
  const byKey = new Map<string, number[]>();
  for (const r of rows) byKey.set(`${r.arm}\u0000${r.step}`, [...(byKey.get(`${r.arm}\u0000${r.step}`) ?? []), r.value]);
  const values = [...byKey].map(([k, xs]) => {
    const [arm, step] = k.split('\u0000') as [string, string];
    return { arm, step: Number(step), mean: mean(xs), lo: Math.min(...xs), hi: Math.max(...xs) };
  });
  const x = { field: 'step', type: 'quantitative' as const, title: 'training step', axis: { format: 'd', tickMinStep: 1 } };
  const color = { field: 'arm', type: 'nominal' as const, title: null, legend: { orient: 'bottom' as const } };
  return {
    name,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${title} (mean over seeds; shaded: lowest to highest seed)`,
      width: 560,
      height: 260,
      background: 'white',
      config: { font: FONT },
      data: { values },
      layer: [
        { mark: { type: 'area', opacity: 0.18 }, encoding: { x, y: { field: 'lo', type: 'quantitative', title: y, scale: { zero: false } }, y2: { field: 'hi' }, color } },
        { mark: { type: 'line', point: true }, encoding: { x, y: { field: 'mean', type: 'quantitative' }, color, strokeDash: { field: 'arm', type: 'nominal', title: null } } },
      ],
    },
  };
}

export interface ReportContext {
  plan: Plan;
  uri: string;
  /** The store as the report names it (a path inside the repository relative to it). */
  shownUri: string;
  /** The committed experiment config's text, quoted in the report. */
  configText: string;
  /** The commit this report is generated at (the runs' own commits come from the driver records). */
  commit: string;
}

/** Where the runs ran and how long their drivers took, from the driver records in the store. */
export function provenance(invocations: DriverInvocation[], reportCommit: string): string {
  if (invocations.length === 0) return `Report generated at commit ${reportCommit}; the store holds no driver records, so the commit the runs ran at, their wall time and machine are unknown.`;
  const list = (xs: string[]): string => [...new Set(xs)].join(', ');
  const seconds = invocations.reduce((a, x) => a + x.seconds, 0);
  const killed = invocations.filter((x) => !x.complete).length;
  const commits = list(invocations.map((x) => x.commit));
  return [
    `Ran at commit ${commits} on ${list(invocations.map((x) => x.machine))}`,
    `; wall time ${(seconds / 60).toFixed(1)} minutes over ${invocations.length} driver invocation${invocations.length === 1 ? '' : 's'}`,
    killed === 0 ? '' : ` (${killed} ended before completing every run; each counts until its last finished run)`,
    commits === reportCommit ? '.' : `; report generated at commit ${reportCommit}.`,
  ].join('');
}

/** Writes `<outDir>/reproduction.md` and its charts from the runs' records; returns the markdown. */
export async function writeReproductionReport(ctx: ReportContext, outDir: string): Promise<string> {
  const { runs: records, invocations } = await readRecords(ctx.plan, ctx.uri);
  const byArm = (arm: string): RunRecords[] => records.filter((r) => r.run.arm === arm);
  const finalBySeed = (arm: string, key: string): Map<number, number> => new Map(byArm(arm).flatMap((r) => (num(finalEval(r)?.metrics[key]) === undefined ? [] : [[r.run.seed, num(finalEval(r)?.metrics[key])!] as [number, number]])));
  const finals = (arm: string, key: string): number[] => [...finalBySeed(arm, key).values()];
  const bases = (key: string): number[] => byArm('r3').map((r) => num(r.evaluations.find((e) => e.step === 0)?.metrics[key])).filter((x): x is number => x !== undefined);
  const keys = passKeys(records);
  const lines: string[] = [];
  const L = (s = ''): number => lines.push(s);

  L('# Reproducing the paper\'s claims at small scale');
  L();
  L(`Generated by \`npm run experiment:reproduce${ctx.plan.mode === 'quick' ? ' -- --quick' : ''}\` from the runs' records in \`${ctx.shownUri}\`; not edited by hand.`);
  L(`${ctx.plan.mode === 'quick' ? 'Quick' : 'Full'} settings; seeds ${ctx.plan.seeds.join(', ')}. ${provenance(invocations, ctx.commit)}`);
  L();
  L('## Held-out pass@k (shape of the paper\'s Table 2)');
  L();
  L('Final checkpoint of each run; mean ± standard deviation over seeds. The base is the supervised warm start every arm begins from (step 0).');
  L();
  L(`| arm | ${keys.join(' | ')} |`);
  L(`|---|${keys.map(() => '---:').join('|')}|`);
  L(`| base (SFT warm start) | ${keys.map((k) => fmt(bases(k))).join(' | ')} |`);
  for (const arm of ARM_NAMES) L(`| ${arm} | ${keys.map((k) => fmt(finals(arm, k))).join(' | ')} |`);
  L();
  L('## Reasoning length');
  L();
  L('Mean completion tokens of the training rollouts over the first and the last 5 steps (in runs shorter than 10 steps, the first and last half).');
  L();
  L('| arm | start | end | change |');
  L('|---|---:|---:|---:|');
  const lengthChange: Record<string, number[]> = {};
  for (const arm of ARM_NAMES) {
    const ls = byArm(arm).map((r) => lengths(r)).filter((x): x is { start: number; end: number } => x !== undefined);
    lengthChange[arm] = ls.map((l) => l.end - l.start);
    L(`| ${arm} | ${fmt(ls.map((l) => l.start), 1)} | ${fmt(ls.map((l) => l.end), 1)} | ${fmt(lengthChange[arm], 1)} |`);
  }
  L();
  L('## Compute of dynamic filtering');
  L();
  L('Per seed, the target is the final pass@1 of the unfiltered r3 run; each arm\'s cost is the tokens it spent (rollout, scoring, update and filtering rounds) up to its first evaluation at or above the target.');
  L();
  L('| seed | target pass@1 | r3 (unfiltered): step, tokens | r3-filtered: step, tokens | filtered ÷ unfiltered |');
  L('|---|---:|---|---|---:|');
  const ratios: number[] = [];
  let unreached = 0;
  for (const seed of ctx.plan.seeds) {
    const plain = records.find((r) => r.run.arm === 'r3' && r.run.seed === seed);
    const filtered = records.find((r) => r.run.arm === 'r3-filtered' && r.run.seed === seed);
    const target = plain && num(finalEval(plain)?.metrics['pass@1']);
    if (!plain || !filtered || target === undefined) {
      L(`| ${seed} | – | – | – | – |`);
      continue;
    }
    const a = reach(plain, target);
    const b = reach(filtered, target);
    if (a && b) ratios.push(b.tokens / a.tokens);
    else unreached++;
    L(`| ${seed} | ${target.toFixed(3)} | ${a ? `${a.step}, ${a.tokens.toLocaleString('en-US')}` : 'not reached'} | ${b ? `${b.step}, ${b.tokens.toLocaleString('en-US')}` : 'not reached'} | ${a && b ? (b.tokens / a.tokens).toFixed(2) : '–'} |`);
  }
  L();

  L('## The claims');
  L();
  L('A difference counts when the mean over seeds of the per-seed difference (arms of one seed share its warm start and held-out set) is more than twice its standard error; with fewer than two seeds nothing counts and every claim is inconclusive.');
  L();
  const verdicts: [string, Verdict, string][] = [];
  {
    const c = compare(finalBySeed('r3', 'pass@1'), finalBySeed('aggregate', 'pass@1'));
    const v: Verdict = c.sign > 0 ? 'held' : c.sign < 0 ? 'did not hold' : 'inconclusive';
    verdicts.push(['(a) R3 beats the aggregate reward', v, `pass@1 r3 ${fmt(finals('r3', 'pass@1'))} vs aggregate ${fmt(finals('aggregate', 'pass@1'))}: paired difference ${c.diff.toFixed(3)}, 2 SE ${(2 * c.se).toFixed(3)}${c.enough ? '' : ' (one seed)'}`]);
  }
  {
    const at1 = compare(finalBySeed('r3', 'pass@1'), finalBySeed('correctness', 'pass@1'));
    const higher = keys.filter((k) => k !== 'pass@1').map((k) => ({ k, c: compare(finalBySeed('r3', k), finalBySeed('correctness', k)) }));
    const close = at1.sign >= 0;
    const better = higher.length > 0 && higher.every((h) => h.c.sign > 0);
    const worse = at1.sign < 0 && higher.every((h) => h.c.sign <= 0);
    const v: Verdict = !at1.enough ? 'inconclusive' : close && better ? 'held' : worse ? 'did not hold' : 'inconclusive';
    verdicts.push([
      '(b) R3 comes close to the correctness reward at pass@1 and beats it at pass@k, k ≥ 2',
      v,
      `paired r3 − correctness: pass@1 ${at1.diff.toFixed(3)} (2 SE ${(2 * at1.se).toFixed(3)}); ${higher.map((h) => `${h.k} ${h.c.diff >= 0 ? '+' : ''}${h.c.diff.toFixed(3)} (2 SE ${(2 * h.c.se).toFixed(3)})`).join(', ') || 'no pass@k, k ≥ 2'}`,
    ]);
  }
  {
    const r = ratios.length ? mean(ratios) : undefined;
    // Never reaching the unfiltered arm's accuracy within the same steps is the claim failing, not a missing number.
    const v: Verdict = ctx.plan.seeds.length < 2 ? 'inconclusive' : unreached > ctx.plan.seeds.length / 2 ? 'did not hold' : ratios.length < 2 ? 'inconclusive' : r! <= 0.8 ? 'held' : r! >= 1 ? 'did not hold' : 'inconclusive';
    verdicts.push([
      '(c) R3-based filtering reaches the same accuracy with less compute (paper: about 45% less)',
      v,
      r === undefined ? `the filtered arm did not reach the unfiltered arm's final pass@1 within the run in ${unreached} of ${ctx.plan.seeds.length} seeds` : `filtered ÷ unfiltered tokens ${fmt(ratios, 2)} over ${ratios.length} seed(s)${unreached ? `, ${unreached} not reached` : ''}; held at ≤ 0.80`,
    ]);
  }
  {
    const agg = lengthChange.aggregate ?? [];
    const r3 = lengthChange.r3 ?? [];
    const asMap = (xs: number[]): Map<number, number> => new Map(xs.map((x, i) => [i, x]));
    const zero = (xs: number[]): Map<number, number> => new Map(xs.map((_, i) => [i, 0]));
    const a = compare(asMap(agg), zero(agg));
    const b = compare(asMap(r3), zero(r3));
    const v: Verdict = a.sign < 0 && b.sign > 0 ? 'held' : a.sign > 0 || b.sign < 0 ? 'did not hold' : 'inconclusive';
    verdicts.push(['(d) the aggregate reward shortens the reasoning and R3 lengthens it', v, `length change aggregate ${fmt(agg, 1)}, r3 ${fmt(r3, 1)} tokens`]);
  }
  const reason: Record<Verdict, string> = {
    held: 'the difference is in the claimed direction and beyond twice its standard error',
    'did not hold': 'the numbers go against the claim beyond chance',
    inconclusive: 'the differences are within twice their standard error at this scale',
  };
  L('| claim | verdict | the numbers | why |');
  L('|---|---|---|---|');
  for (const [claim, v, numbers] of verdicts) L(`| ${claim} | **${v}** | ${numbers} | ${reason[v]} |`);
  L();

  const charts = [
    chart('accuracy', 'Held-out pass@1 per evaluation', 'pass@1', records.flatMap((r) => r.evaluations.flatMap((e) => (num(e.metrics['pass@1']) === undefined ? [] : [{ step: e.step, arm: r.run.arm, value: e.metrics['pass@1']! }])))),
    chart('reward', 'Training reward per step', 'mean reward', records.flatMap((r) => r.metrics.map((m) => ({ step: m.step, arm: r.run.arm, value: m.reward.mean })))),
    chart('reasoning-length', 'Completion length per step', 'mean completion tokens', records.flatMap((r) => r.metrics.map((m) => ({ step: m.step, arm: r.run.arm, value: m.completionTokens })))),
  ];
  await makeDirectories(outDir);
  L('## Charts');
  L();
  for (const c of charts) {
    const svg = await renderSpec(c.spec);
    await writeFile(join(outDir, `reproduction-${c.name}.svg`), svg);
    await writeFile(join(outDir, `reproduction-${c.name}.png`), svgToPng(svg));
    L(`![${c.name}](reproduction-${c.name}.svg) ([PNG](reproduction-${c.name}.png))`);
    L();
  }
  L('## Runs');
  L();
  L('| arm | seed | run id | steps recorded | evaluations |');
  L('|---|---:|---|---:|---|');
  for (const r of records) L(`| ${r.run.arm} | ${r.run.seed} | \`${r.run.runId}\` | ${r.metrics.length} | ${r.evaluations.map((e) => e.step).join(', ')} |`);
  L();
  L('## Experiment config');
  L();
  L(`Arms: ${ARM_NAMES.map((a) => `${a} = ${JSON.stringify(ARMS[a])}`).join('; ')}.`);
  L();
  L('```json');
  L(ctx.configText.trim());
  L('```');
  L();
  const markdown = lines.join('\n');
  await writeFile(join(outDir, 'reproduction.md'), markdown);
  return markdown;
}
