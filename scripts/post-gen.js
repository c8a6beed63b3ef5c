#!/usr/bin/env node
// Builds the descriptor set that gRPC server reflection serves (with imports, so
// strict clients such as grpcurl and buf curl can resolve google.protobuf.Struct).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
execFileSync(path.join(root, 'node_modules/.bin/buf'), ['build', '-o', 'src/gen/act.binpb'], { cwd: root, stdio: 'inherit' });
