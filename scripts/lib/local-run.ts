// A run on this machine from a script (quickstart, demos): the local Temporal dev server (started if it
// is not answering and left running afterwards), an all-in-one worker this script starts and always
// stops, and a client. The script's own part gets the client and the worker's log file.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { servicesConfig, servicesStatus, servicesUp } from '../services/dev-services.js';
import { connectClient, type Connected } from '../../cli/client.js';
import { WorkerProcess } from './worker-process.js';
import { makeDirectoriesSync } from '../../storage/local-files.js';

export interface LocalRun {
  client: Connected;
  /** Whether this script started the Temporal dev server (it is left running either way). */
  startedTemporal: boolean;
  uiPort: number;
  /** The all-in-one worker this script started. */
  workerPid: number;
}

/** `log` takes this script's own lines (default stdout; a script printing JSON there sends them to stderr). */
export async function withLocalWorker<T>(name: string, body: (run: LocalRun) => Promise<T>, log: (line: string) => void = console.log): Promise<T> {
  const cfg = servicesConfig();
  const [temporal] = await servicesStatus(cfg, ['temporal']);
  let startedTemporal = false;
  if (!temporal!.answering) {
    log('==> starting the Temporal dev server');
    await servicesUp(cfg, ['temporal'], (line) => log(`    ${line}`));
    startedTemporal = true;
  }

  log('==> starting an all-in-one worker (control + policy)');
  makeDirectoriesSync(join(cfg.dataDir, 'logs'));
  const logFile = join(cfg.dataDir, 'logs', `${name}-worker.log`);
  const worker = await WorkerProcess.start('all');
  log(`    worker pid ${worker.pid} ready`);
  const stopWorker = async (): Promise<void> => {
    await worker.kill('SIGTERM');
    await writeFile(logFile, worker.output);
  };
  process.once('SIGINT', () => void stopWorker().then(() => process.exit(130)));

  const client = await connectClient();
  try {
    return await body({ client, startedTemporal, uiPort: cfg.temporal.uiPort, workerPid: worker.pid });
  } finally {
    await client.close();
    await stopWorker();
    log(
      startedTemporal
        ? `\nLeft running: the Temporal dev server (Web UI http://127.0.0.1:${cfg.temporal.uiPort}), so you can browse the run. Stop it with \`npm run services:down\`.`
        : `\nThe Temporal dev server was already running and is left as it was. The worker this script started is stopped (its log: ${logFile}).`,
    );
  }
}
