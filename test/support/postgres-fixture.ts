/**
 * Mocha global fixture (registered in .mocharc.json): the PostgreSQL binaries are found before the
 * tests (a few ms; minutes only if apt must install them); the run's shared cluster starts on the
 * first `testDatabaseUrl()` and is stopped and removed here, after every test file has run.
 */
import { preparePostgresBinaries, stopSharedPostgres } from './postgres';

export async function mochaGlobalSetup(): Promise<void> {
  await preparePostgresBinaries();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedPostgres();
}
