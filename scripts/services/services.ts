// `npm run services:up|down|status [temporal|s3]`: the local Temporal dev server and SeaweedFS S3.
import { SERVICE_NAMES, servicesConfig, servicesDown, servicesStatus, servicesUp, type ServiceName } from './dev-services.js';

const USAGE = `usage: services <up|down|status> [temporal|s3 ...]

  up      start the Temporal dev server (SQLite under the data folder, Web UI) and SeaweedFS (S3 API),
          wait until both answer, and write the env file clients read (.data/services.env)
  down    stop the processes 'up' started (by PID file); nothing else is touched
  status  show whether each service runs and answers

environment: DRO_DATA_DIR (default .data), DRO_TEMPORAL_PORT (7233), DRO_TEMPORAL_UI_PORT (8233),
             DRO_S3_PORT (8333; SeaweedFS also uses the next 3 ports and those + 10000), DRO_S3_BUCKET (dro-dev)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  for (const name of rest) {
    if (!SERVICE_NAMES.includes(name as ServiceName)) throw new Error(`unknown service "${name}" (choose from ${SERVICE_NAMES.join(', ')})`);
  }
  const which = rest.length > 0 ? (rest as ServiceName[]) : SERVICE_NAMES;
  const cfg = servicesConfig();
  switch (command) {
    case 'up': {
      const vars = await servicesUp(cfg, which);
      console.log(`Temporal: ${vars.TEMPORAL_ADDRESS} (Web UI ${vars.DRO_TEMPORAL_UI_URL}); S3: ${vars.AWS_ENDPOINT_URL_S3} bucket ${vars.DRO_S3_URI}`);
      console.log(`env file: ${cfg.envFile}`);
      return 0;
    }
    case 'down':
      await servicesDown(cfg, which);
      return 0;
    case 'status': {
      const rows = await servicesStatus(cfg, which);
      for (const row of rows) {
        const state = row.pid === undefined ? 'stopped' : row.answering ? 'running' : 'running, not answering';
        console.log(`${row.name.padEnd(9)} ${state.padEnd(24)} ${row.pid !== undefined ? `pid ${row.pid}` : ''} port ${row.port}`);
      }
      return rows.every((r) => r.answering) ? 0 : 1;
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`services: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
