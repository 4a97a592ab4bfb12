// `npm run services:up|down|status [temporal|s3]`: the local Temporal dev server and SeaweedFS S3.
import { Command } from 'commander';
import { SERVICE_NAMES, servicesConfig, servicesDown, servicesStatus, servicesUp, type ServiceName } from './dev-services.js';
import { runScript } from '../lib/command-line.js';

const ENVIRONMENT = `
environment: DRO_DATA_DIR (default .data), DRO_TEMPORAL_PORT (7233), DRO_TEMPORAL_UI_PORT (8233),
             DRO_S3_PORT (8333; SeaweedFS also uses the next 3 ports and those + 10000), DRO_S3_BUCKET (dro-dev)`;

/** The services named on the command line, all of them when none is. */
function chosen(names: string[]): readonly ServiceName[] {
  // Exit code 1, not 2, as it always was for an unknown name: callers may test for it.
  for (const name of names) {
    if (!SERVICE_NAMES.includes(name as ServiceName)) throw new Error(`unknown service "${name}" (choose from ${SERVICE_NAMES.join(', ')})`);
  }
  return names.length > 0 ? (names as ServiceName[]) : SERVICE_NAMES;
}

const program = new Command('services').description('The local Temporal dev server and SeaweedFS S3.').addHelpText('after', ENVIRONMENT);
const services = `${SERVICE_NAMES.join(', ')} (default: all)`;

program
  .command('up')
  .description('start the Temporal dev server (SQLite under the data folder, Web UI) and SeaweedFS (S3 API), wait until both answer, and write the env file clients read (.data/services.env)')
  .argument('[services...]', services)
  .action(async (names: string[]) => {
    const which = chosen(names);
    const cfg = servicesConfig();
    const vars = await servicesUp(cfg, which);
    console.log(`Temporal: ${vars.TEMPORAL_ADDRESS} (Web UI ${vars.DRO_TEMPORAL_UI_URL}); S3: ${vars.AWS_ENDPOINT_URL_S3} bucket ${vars.DRO_S3_URI}`);
    console.log(`env file: ${cfg.envFile}`);
  });

program
  .command('down')
  .description("stop the processes 'up' started (by PID file); nothing else is touched")
  .argument('[services...]', services)
  .action(async (names: string[]) => {
    const which = chosen(names);
    await servicesDown(servicesConfig(), which);
  });

program
  .command('status')
  .description('show whether each service runs and answers; exit code 1 when one does not answer')
  .argument('[services...]', services)
  .action(async (names: string[]) => {
    const which = chosen(names);
    const rows = await servicesStatus(servicesConfig(), which);
    for (const row of rows) {
      const state = row.pid === undefined ? 'stopped' : row.answering ? 'running' : 'running, not answering';
      console.log(`${row.name.padEnd(9)} ${state.padEnd(24)} ${row.pid !== undefined ? `pid ${row.pid}` : ''} port ${row.port}`);
    }
    if (!rows.every((r) => r.answering)) process.exitCode = 1;
  });

runScript('services', program);
