/**
 * Mocha global fixture (registered in .mocharc.json): the run's shared PostgreSQL cluster starts on
 * the first `testDatabaseUrl()` and is stopped and removed here, after every test file has run.
 */
import { stopSharedPostgres } from './postgres';

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedPostgres();
}
