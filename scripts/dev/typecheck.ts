// `npm run typecheck`: tsc over the TypeScript files git tracks (in a git checkout), so a scratch file
// someone left in scripts/ or test/ cannot fail `npm test`; outside git, over tsconfig.json as it is.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const listed = spawnSync('git', ['ls-files', '--cached', '--', '*.ts'], { cwd: root, encoding: 'utf8' });
let project = join(root, 'tsconfig.json');
if (listed.status === 0 && listed.stdout.trim() !== '') {
  const files = listed.stdout.split('\n').filter((f) => f !== '' && !f.startsWith('node_modules/')).map((f) => join(root, f));
  const dir = join(root, 'node_modules', '.cache', 'dro-typecheck');
  mkdirSync(dir, { recursive: true });
  project = join(dir, 'tsconfig.json');
  writeFileSync(project, JSON.stringify({ extends: join(root, 'tsconfig.json'), include: [], files }, null, 2));
}
const result = spawnSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
