/**
 * `act login --url URL --key KEY`: checks the key against the control plane and
 * saves both in the config file (mode 0600), so later commands need neither.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Kit } from '../context';
import { ApiClient } from '../client';
import { resolveConnection, writeConfig } from '../config';
import { EXIT, UsageError } from '../errors';
import type { Json } from './shared';

export function registerLogin(program: Command, k: Kit): void {
  program
    .command('login')
    .description('save the control-plane URL and API key in the config file (checks the key first)')
    .option('--no-verify', 'save without asking the control plane')
    .addHelpText(
      'after',
      `
Uses the global --url and --key (or ACT_URL and ACT_KEY). --key - reads the key
from standard input, keeping it out of the shell history. The file is
ACT_CONFIG, else ~/.config/act/config.json, written with mode 0600.

Example:
  act login --url http://127.0.0.1:8700 --key actk_…`,
    )
    .action(
      k.action(async (c, o: Json) => {
        const g = c.globals;
        if (g.key === '-') g.key = readFileSync(0, 'utf8').trim();
        // What login saves comes from the flags and the environment, never from the old file.
        const conn = resolveConnection(g, c.env, { readFile: false });
        if (conn.key === undefined)
          throw new UsageError('act login needs --key KEY (or ACT_KEY; --key - reads it from stdin)');
        if (o.verify !== false) {
          const api = new ApiClient(conn);
          const res = await api.raw('GET', '/api/agents', { query: { limit: 1 } });
          // 403 is a valid key of another role (approver, auditor): only 401 means a wrong key.
          if (res.status === 401 || (!res.ok && res.status !== 403))
            throw await api.apiError(res, 'GET', '/api/agents', 'key');
          await res.body?.cancel();
        }
        writeConfig(conn.configPath, { url: conn.url, key: conn.key });
        if (c.out.json) await c.out.printJson({ url: conn.url, config: conn.configPath });
        else await c.out.say(`saved ${conn.url} and the API key in ${conn.configPath} (mode 0600)\n`);
        return EXIT.OK;
      }),
    );
}
