// A `dro worker` child process, for everything that starts workers of its own (quickstart, benchmarks,
// tests): `ready` resolves once it polls, `exited` when it ends, and `kill` signals only its own PID.
// The worker shuts itself down when its parent dies, so a starter killed with SIGKILL leaves no orphan.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const DRO = join(import.meta.dirname, '..', '..', 'bin', 'dro');

export class WorkerProcess {
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  /** Everything the worker printed (stdout and stderr). */
  output = '';

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
    this.ready = new Promise((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        this.output += chunk.toString();
        if (/worker \S+ ready/.test(this.output)) resolve();
      });
      child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      void this.exited.then((code) => reject(new Error(`the worker exited (code ${code}) before it was ready:\n${this.output.slice(-2000)}`)));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts `dro worker --role <role>` with `env` added to this process's and any further `dro worker` options. */
  static async start(role: 'control' | 'policy' | 'all', env: Record<string, string | undefined> = {}, options: readonly string[] = []): Promise<WorkerProcess> {
    const child = spawn(DRO, ['worker', '--role', role, '--exit-with-parent', ...options], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const worker = new WorkerProcess(child);
    await worker.ready;
    return worker;
  }

  /** Signals this process (only this PID) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) process.kill(this.pid, signal);
    await this.exited;
  }
}
