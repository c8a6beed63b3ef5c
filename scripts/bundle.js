#!/usr/bin/env node
/**
 * Bundles the `act` entry point (dist/bin/act.js, compiled by tsc) and the modules it loads
 * into that one file, with esbuild. A sidecar's cold start is mostly module loading: resolving,
 * stat-ing and reading ~300 files of grpc-js, pino, prom-client and our own code took ~30 ms of
 * the ~220 ms to the first check here; one file skips that. The other files in dist/ stay as
 * tsc wrote them (the health probe, and benches pointing at a build).
 *
 * Left out of the bundle and loaded from node_modules at run time:
 *   - lmdb: a native addon (and msgpackr with it);
 *   - @grpc/reflection, @grpc/proto-loader, protobufjs: loaded on the first reflection call
 *     only, and they read .proto files relative to their own directory;
 *   - @marcbachmann/cel-js: an ES module, loaded on the first CEL rule;
 *   - yaml: loaded by `act policies create|update --file x.yaml` (840 KB of source) and the MCP
 *     config;
 *   - @modelcontextprotocol/sdk (with zod): loaded only by the MCP gateway and wrapper (about
 *     2 MB, ~25 ms of every cold start when bundled).
 * Paths our code builds from __dirname (dist/gen/act.binpb, package.json) keep working
 * because every compiled module sits one directory below dist/, as bin/act.js does.
 */
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

// `node scripts/bundle.js [dist-dir]`: a build elsewhere (e.g. for ACT_BENCH_DIST) can be bundled too.
const entry = path.join(path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'dist')), 'bin', 'act.js');

esbuild
  .build({
    entryPoints: [entry],
    outfile: entry,
    allowOverwrite: true,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: true,
    legalComments: 'external',
    external: [
      'lmdb',
      '@grpc/reflection',
      '@grpc/proto-loader',
      'protobufjs',
      '@marcbachmann/cel-js',
      '@modelcontextprotocol/sdk',
      'yaml',
    ],
    // The repo's packages also for a build outside it.
    nodePaths: [path.join(__dirname, '..', 'node_modules')],
    logLevel: 'warning',
  })
  .then(
    () => {
      // One shebang on the first line (esbuild keeps the entry's; a banner would add a second)
      // and the execute bit, so an installed `act` bin link runs.
      const code = fs.readFileSync(entry, 'utf8').replace(/^(#![^\n]*\n)+/, '');
      fs.writeFileSync(entry, `#!/usr/bin/env node\n${code}`);
      fs.chmodSync(entry, 0o755);
    },
    (err) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
