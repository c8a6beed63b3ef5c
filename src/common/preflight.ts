/**
 * Start-up checks that must fail before anything is written to disk: each listen address can be
 * bound (port free, permitted), each file readable. A bind is released at once; the real
 * listener binds a moment later (a race with another process in between is possible, and then
 * fails as clearly).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { StartupError } from './errors';

export async function checkListen(host: string, port: number, setting: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'address in use'
          : err.code === 'EACCES'
            ? 'permission denied'
            : err.code === 'EADDRNOTAVAIL'
              ? 'no such local address'
              : (err.code ?? err.message);
      reject(new StartupError(`cannot listen on ${host}:${port} (${why})`, setting, { cause: err }));
    });
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve()));
  });
}

export function readFileOrFail(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new StartupError(
      `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      setting,
      { cause: err },
    );
  }
}
