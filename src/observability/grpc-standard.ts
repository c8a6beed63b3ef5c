/**
 * The standard services every ACT gRPC server carries: grpc.health.v1.Health and
 * server reflection (v1 and v1alpha). Reflection is fed from the descriptor set
 * `buf build` writes (src/gen/act.binpb, with imports), not from proto-loader's
 * loadSync, whose synthesized descriptors strict clients (grpcurl, buf curl)
 * reject for google.protobuf.Struct and map fields (grpc-node #2595, #2958).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ReflectionService } from '@grpc/reflection';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthService,
  type HealthServer,
} from '../gen/grpc/health/v1/health';

export { ServingStatus };

/** Finds the descriptor set next to the generated code (src/gen or dist/gen). */
function descriptorSetPath(): string {
  const candidates = [
    path.join(__dirname, '../gen/act.binpb'),
    path.join(__dirname, '../../src/gen/act.binpb'),
  ];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error('descriptor set act.binpb not found; run npm run gen');
  return found;
}

/** The reflection service lists (and describes) itself, as grpcurl and buf curl expect. */
const REFLECTION_V1 = 'grpc.reflection.v1.ServerReflection';

/**
 * The descriptor of grpc/reflection/v1/reflection.proto (shipped with @grpc/reflection).
 * It has no maps or well-known types, so proto-loader's descriptor for it is exact.
 */
function reflectionFileDescriptors(): Buffer[] {
  const dir = path.join(path.dirname(require.resolve('@grpc/reflection')), '../proto');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadSync } = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
  const def = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [dir] });
  // Message entries carry the file's descriptor (service entries do not).
  const msg = def['grpc.reflection.v1.ServerReflectionRequest'] as { fileDescriptorProtos?: Buffer[] };
  return msg.fileDescriptorProtos ?? [];
}

/** The reflection service's real definition and handlers, as @grpc/reflection builds them. */
interface Built {
  definition: grpc.ServiceDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

/**
 * Builds @grpc/reflection's services for `services`. Expensive (about 150 ms and several MB:
 * protobufjs through proto-loader parses the reflection protos, every descriptor is decoded
 * and indexed), so addReflection calls it on the first reflection call, not at startup.
 */
function buildReflection(services: string[]): Map<string, Built> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { ReflectionService: Reflection } = require('@grpc/reflection') as typeof import('@grpc/reflection');
  const { fromBinary, toBinary } = require('@bufbuild/protobuf') as typeof import('@bufbuild/protobuf');
  const { FileDescriptorProtoSchema, FileDescriptorSetSchema } =
    require('@bufbuild/protobuf/wkt') as typeof import('@bufbuild/protobuf/wkt');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath()));
  const fileDescriptorProtos = set.file.map((f) => toBinary(FileDescriptorProtoSchema, f));
  // ReflectionService reads `fileDescriptorProtos` from each entry of a package definition.
  const pkg = {
    act: { fileDescriptorProtos },
    reflection: { fileDescriptorProtos: reflectionFileDescriptors() },
  } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  const listed = services.includes(REFLECTION_V1) ? services : [...services, REFLECTION_V1];
  const built = new Map<string, Built>();
  // addToServer only calls server.addService(definition, handlers): capture both.
  const capture = {
    addService(definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) {
      const method = Object.values(definition)[0]!;
      built.set(method.path, { definition, handlers });
    },
  } as unknown as grpc.Server;
  new Reflection(pkg, { services: listed }).addToServer(capture);
  return built;
}

/** The reflection versions grpcurl, buf curl and Postman ask for. */
const REFLECTION_PATHS = [
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
];

/**
 * Adds reflection (v1 and v1alpha) to a server. Registering costs nothing: the method
 * definitions here delegate to @grpc/reflection's, built on the first reflection call, so a
 * sidecar starts and serves its first check without paying for a developer tool.
 */
export function addReflection(server: grpc.Server, services: string[]): void {
  let built: Map<string, Built> | undefined;
  const real = (methodPath: string): Built => {
    built ??= buildReflection(services);
    const b = built.get(methodPath);
    if (!b) throw new Error(`@grpc/reflection did not define ${methodPath}`);
    return b;
  };
  for (const methodPath of REFLECTION_PATHS) {
    const method = () => Object.values(real(methodPath).definition)[0]!;
    const definition: grpc.ServiceDefinition = {
      ServerReflectionInfo: {
        path: methodPath,
        requestStream: true,
        responseStream: true,
        originalName: 'serverReflectionInfo',
        requestSerialize: (v: unknown) => method().requestSerialize(v),
        requestDeserialize: (b: Buffer) => method().requestDeserialize(b),
        responseSerialize: (v: unknown) => method().responseSerialize(v),
        responseDeserialize: (b: Buffer) => method().responseDeserialize(b),
      },
    };
    server.addService(definition, {
      ServerReflectionInfo: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        const handler = Object.values(real(methodPath).handlers)[0] as grpc.handleBidiStreamingCall<
          unknown,
          unknown
        >;
        handler(call);
      },
    });
  }
}

/** A Health service whose statuses the process sets as it starts and drains. */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<{
    service: string;
    call: grpc.ServerWritableStream<unknown, unknown>;
  }>();

  constructor(services: string[]) {
    for (const s of ['', ...services]) this.statuses.set(s, ServingStatus.NOT_SERVING);
  }

  set(status: ServingStatus): void {
    for (const k of this.statuses.keys()) this.statuses.set(k, status);
    for (const w of this.watchers)
      w.call.write({ status: this.statuses.get(w.service) ?? ServingStatus.SERVICE_UNKNOWN });
  }

  get serving(): boolean {
    return this.statuses.get('') === ServingStatus.SERVING;
  }

  addTo(server: grpc.Server): void {
    const impl: HealthServer = {
      check: (call, cb) => {
        const s = this.statuses.get(call.request.service);
        if (s === undefined)
          cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
        else cb(null, { status: s });
      },
      list: (_call, cb) => {
        const statuses: Record<string, { status: ServingStatus }> = {};
        for (const [k, v] of this.statuses) statuses[k] = { status: v };
        cb(null, { statuses });
      },
      watch: (call) => {
        const w = {
          service: call.request.service,
          call: call as grpc.ServerWritableStream<unknown, unknown>,
        };
        this.watchers.add(w);
        call.write({ status: this.statuses.get(w.service) ?? ServingStatus.SERVICE_UNKNOWN });
        call.on('cancelled', () => this.watchers.delete(w));
      },
    };
    server.addService(HealthService, impl);
  }

  /** Ends Watch streams so the server can shut down. */
  close(): void {
    for (const w of this.watchers) w.call.end();
    this.watchers.clear();
  }
}
