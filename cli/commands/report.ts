// `dro report`: a run's metrics, evaluations and config as a folder of charts (SVG and PNG) with an
// index.html, read from the run's store alone, so it works while the run trains and after Temporal forgot it.
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import type { Command } from 'commander';
import { View, parse } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { readCheckpointState, readEvaluations, RecordError, type EvaluationRecord, type StepMetricsRecord } from '../../activities/records.js';
import { CheckpointError, listCheckpoints } from '../../storage/checkpoints.js';
import { openBlobStore } from '../../storage/open.js';
import type { BlobStore } from '../../storage/blob-store.js';
import { makeDirectories } from '../../storage/local-files.js';
import { textOption } from '../options.js';
import { runOption, storeOption } from './runs.js';
import { findRunStore, runMetrics, RunError } from '../client.js';

/** PNGs are drawn at this multiple of the SVG's size, so they stay sharp on high-density screens. */
export const PNG_SCALE = 2;

// Vega's default "sans-serif" maps to Arial in resvg, which many Linux boxes lack; a list lets the PNG
// pick whatever of these exists and browsers showing the SVG do the same.
export const FONT = 'Helvetica, Arial, DejaVu Sans, Liberation Sans, sans-serif';

type Series = Record<string, unknown>;

interface ChartDef {
  name: string;
  title: string;
  y: string;
  x: string;
  rows: { step: number; series: Series }[];
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function metricCharts(metrics: StepMetricsRecord[]): ChartDef[] {
  const one = (name: string, title: string, y: string, field: keyof StepMetricsRecord): ChartDef => ({ name, title, y, x: 'training step', rows: metrics.map((m) => ({ step: m.step, series: { [y]: m[field] } })) });
  return [
    {
      name: 'reward',
      title: 'Reward per step (training reward and every reward kind)',
      y: 'mean reward',
      x: 'training step',
      rows: metrics.map((m) => ({ step: m.step, series: { 'training reward': m.reward.mean, ...Object.fromEntries(Object.entries(m.rewards).map(([k, v]) => [k, v.mean])) } })),
    },
    one('loss', 'GRPO loss', 'loss', 'loss'),
    one('kl', 'KL to the reference policy', 'KL', 'kl'),
    one('kl-beta', 'KL weight', 'klBeta', 'klBeta'),
    one('completion-length', 'Completion length', 'mean completion tokens', 'completionTokens'),
    one('truncation', 'Truncated completions', 'share truncated', 'truncatedShare'),
    one('skipped-groups', 'Skipped groups (no reward spread)', 'share of groups skipped', 'skippedGroupShare'),
    one('learning-rate', 'Learning rate', 'learning rate', 'learningRate'),
    one('temperature', 'Sampling temperature', 'temperature', 'temperature'),
  ];
}

function evaluationChart(evaluations: EvaluationRecord[]): ChartDef {
  return { name: 'evaluation', title: 'Evaluation per checkpoint', y: 'metric value', x: 'checkpoint step', rows: evaluations.map((e) => ({ step: e.step, series: e.metrics })) };
}

/** Long-form points; non-finite values stay as null so the line shows a gap instead of a made-up value. */
function points(chart: ChartDef): { step: number; series: string; value: number | null }[] {
  return chart.rows.flatMap((r) => Object.entries(r.series).filter(([, v]) => v !== undefined).map(([series, v]) => ({ step: r.step, series, value: finite(v) ? v : null })));
}

async function renderSvg(chart: ChartDef, values: ReturnType<typeof points>): Promise<string> {
  const several = new Set(values.map((p) => p.series)).size > 1;
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    width: 560,
    height: 260,
    background: 'white',
    config: { font: FONT },
    data: { values },
    mark: { type: 'line', point: !several },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: chart.x, axis: { format: 'd', tickMinStep: 1 } },
      y: { field: 'value', type: 'quantitative', title: chart.y, scale: { zero: false } },
      // Dashes as well as colours: the training reward is one of the kinds, so two lines lie on top of each other.
      ...(several ? { color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 3 } }, strokeDash: { field: 'series', type: 'nominal', title: null } } : {}),
    },
  };
  return renderSpec(spec);
}

/** A Vega-Lite spec as SVG (Vega, no browser). */
export async function renderSpec(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** An SVG drawn as PNG at PNG_SCALE with the system's fonts. */
export const svgToPng = (svg: string): Uint8Array => new Resvg(svg, { font: { loadSystemFonts: true }, fitTo: { mode: 'zoom', value: PNG_SCALE }, background: 'white' }).render().asPng();

/** The config in the newest checkpoint's state.json, read alone: the model files may be large. */
async function readConfig(store: BlobStore, runId: string): Promise<{ step: number; config: unknown } | undefined> {
  const newest = (await listCheckpoints(store, runId, { verify: 'size' })).filter((c) => c.valid).at(-1);
  if (!newest) return undefined;
  try {
    return { step: newest.step, config: (await readCheckpointState(store, runId, newest.step)).config };
  } catch (err) {
    // Only sizes were checked: a damaged state.json costs the report its config section, nothing more.
    if (err instanceof CheckpointError || err instanceof RecordError) return undefined;
    throw err;
  }
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const cell = (v: number | undefined): string => (v === undefined ? '-' : Number.isInteger(v) ? String(v) : v.toPrecision(4));

function indexHtml(o: { runId: string; uri: string; charts: ChartDef[]; skipped: ChartDef[]; evaluations: EvaluationRecord[]; config: { step: number; config: unknown } | undefined; steps: number }): string {
  const figures = o.charts.map((c) => `<figure><img src="${esc(c.name)}.svg" alt="${esc(c.title)}"><figcaption>${esc(c.title)} · <a href="${esc(c.name)}.svg">SVG</a> · <a href="${esc(c.name)}.png">PNG</a></figcaption></figure>`);
  const names = [...new Set(o.evaluations.flatMap((e) => Object.keys(e.metrics)))].sort();
  const evals = o.evaluations.length
    ? `<table><tr><th>step</th>${names.map((n) => `<th>${esc(n)}</th>`).join('')}</tr>${o.evaluations.map((e) => `<tr><td>${e.step}</td>${names.map((n) => `<td>${cell(e.metrics[n])}</td>`).join('')}</tr>`).join('')}</table>`
    : '<p>No evaluations yet.</p>';
  const config = o.config ? `<p>From checkpoint ${o.config.step}.</p><pre>${esc(JSON.stringify(o.config.config, null, 2))}</pre>` : '<p>config: not available (no valid checkpoint)</p>';
  const skipped = o.skipped.length ? `<p>Skipped (no values recorded): ${o.skipped.map((c) => esc(c.name)).join(', ')}.</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run ${esc(o.runId)}</title>
<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}pre{background:#f6f6f6;padding:1em}</style>
</head><body>
<h1>Run ${esc(o.runId)}</h1>
<p>Store ${esc(o.uri)} · ${o.steps} recorded steps · generated ${new Date().toISOString()}</p>
<h2>Charts</h2>
${figures.join('\n')}
${skipped}
<h2>Evaluations</h2>
${evals}
<h2>Config</h2>
${config}
</body></html>
`;
}

export async function writeRunReport(o: { uri: string; runId: string; outDir: string }): Promise<{ files: string[]; charts: string[] }> {
  const metrics = await runMetrics(o.uri, o.runId);
  if (metrics.length === 0) throw new RunError(`run ${o.runId} has no metrics in ${o.uri}; nothing to report`);
  const store = await openBlobStore(o.uri);
  let evaluations: EvaluationRecord[];
  let config: Awaited<ReturnType<typeof readConfig>>;
  try {
    evaluations = await readEvaluations(store, o.runId);
    config = await readConfig(store, o.runId);
  } finally {
    await store.close();
  }
  const all = [...metricCharts(metrics), ...(evaluations.length ? [evaluationChart(evaluations)] : [])];
  await makeDirectories(o.outDir);
  const files: string[] = [];
  const drawn: ChartDef[] = [];
  const skipped: ChartDef[] = [];
  for (const chart of all) {
    const values = points(chart);
    if (!values.some((p) => p.value !== null)) {
      skipped.push(chart);
      continue;
    }
    const svg = await renderSvg(chart, values);
    const png = svgToPng(svg);
    for (const [ext, data] of [['svg', svg], ['png', png]] as const) {
      const file = join(o.outDir, `${chart.name}.${ext}`);
      await writeFile(file, data);
      files.push(file);
    }
    drawn.push(chart);
  }
  const index = join(o.outDir, 'index.html');
  await writeFile(index, indexHtml({ runId: o.runId, uri: o.uri, charts: drawn, skipped, evaluations, config, steps: metrics.length }));
  files.push(index);
  return { files, charts: drawn.map((c) => c.name) };
}

export function registerReportCommands(program: Command): void {
  program
    .command('report')
    .description("write a run's charts (SVG and PNG), evaluations and config as a folder with an index.html")
    .addOption(runOption())
    .addOption(storeOption())
    .addOption(textOption('--out <dir>', 'the report folder (default: ./reports/<run id>)'))
    .action(async (o: { run: string; store?: string; out?: string }) => {
      const uri = await findRunStore(o.run, o.store);
      const outDir = resolve(o.out ?? join('reports', o.run));
      const { charts } = await writeRunReport({ uri, runId: o.run, outDir });
      console.log(join(outDir, 'index.html'));
      console.log(`${charts.length} charts`);
    });
}
