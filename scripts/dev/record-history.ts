// Records the replay fixture (test/fixtures/histories/training-run.json): a short real run on the local
// services with an update, a pause and a resume and a child evaluation, whose first execution's history
// (through its continue-as-new) guards workflow changes in CI.
// Run it with the services up and a worker running (`npm run services:up`, `./bin/dro worker`):
//   npx tsx scripts/dev/record-history.ts
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { DEFAULT_GRPO_LOSS_OPTIONS } from '../../dro/grpo.js';
import { tinyRunConfig } from '../../test/training-harness.js';
import { pauseSignal, progressQuery, resumeSignal, setHyperparametersUpdate } from '../../workflows/messages.js';
import { connectClient, startRun } from '../../cli/client.js';

const OUT = join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'histories', 'training-run.json');

async function main(): Promise<void> {
  const store = await mkdtemp(join(tmpdir(), 'dro-history-'));
  const config = tinyRunConfig(store, {
    seed: 2,
    data: { synthetic: { trainCount: 32 } },
    rollout: { groupSize: 2, maxNewTokens: 24 },
    sft: { steps: 4, batchSize: 4 },
    // The recorded run had the default KL weight.
    dro: { klBeta: DEFAULT_GRPO_LOSS_OPTIONS.klBeta },
    schedule: { totalSteps: 5 },
    checkpoint: { every: 2 },
    filtering: { every: 2, chainsPerPrompt: 2, candidatesPerRound: 4 },
    evaluation: { examples: 2, maxNewTokens: 24, every: 2 },
    orchestration: { stepsPerExecution: 3 },
  });
  const c = await connectClient();
  try {
    const run = await startRun(c, config, `replay-fixture-${Date.now().toString(36)}`);
    // Every kind of message lands in the first execution: an update, then a pause held and released.
    await run.handle.executeUpdate(setHyperparametersUpdate, { args: [{ learningRate: 2e-5, temperature: 0.9, fromStep: 2 }] });
    await run.handle.signal(pauseSignal);
    for (let p = await run.handle.query(progressQuery); p.phase !== 'paused'; p = await run.handle.query(progressQuery)) await new Promise((r) => setTimeout(r, 100));
    await run.handle.signal(resumeSignal);
    await run.handle.result();
    const first = c.client.workflow.getHandle(run.workflowId, run.handle.firstExecutionRunId);
    const history = await first.fetchHistory();
    await writeFile(OUT, `${JSON.stringify(history)}\n`);
    console.log(`wrote ${OUT} (${history.events?.length ?? 0} events)`);
  } finally {
    await c.close();
  }
}

main().catch((err: unknown) => {
  console.error(`record-history: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
