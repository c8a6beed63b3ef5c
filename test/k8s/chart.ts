/**
 * Test support for the Helm chart: the real helm binary (scripts/helm.js fetches and pins it),
 * rendering with `helm template`, and offline validation of rendered objects against the
 * Kubernetes 1.27 schemas of kubernetes-models.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';

export const ROOT = path.resolve(__dirname, '../..');
export const CHART = path.join(ROOT, 'charts/act');
export const KUBE_VERSION = '1.32.0';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [k: string]: unknown;
}

let helmPath: string | undefined;
export let helmFetchMs = 0;

/** The pinned helm binary (downloaded once into node_modules/.cache/act-helm). */
export function helm(): string {
  if (!helmPath) {
    const t0 = Date.now();
    helmPath = execFileSync(process.execPath, [path.join(ROOT, 'scripts/helm.js')], {
      encoding: 'utf8',
    }).trim();
    helmFetchMs = Date.now() - t0;
  }
  return helmPath;
}

export function runHelm(args: string[]): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(helm(), args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: ROOT,
    });
    return { status: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { status: e.status ?? 1, stdout: String(e.stdout ?? ''), stderr: String(e.stderr ?? '') };
  }
}

export const valuesFile = (name: string) => path.join(CHART, 'ci', name);

/** `helm template` → objects. Throws with helm's message when rendering fails. */
export function render(
  opts: { values?: string[]; set?: string[]; release?: string; namespace?: string } = {},
): K8sObject[] {
  const args = [
    'template',
    opts.release ?? 'act',
    CHART,
    '--namespace',
    opts.namespace ?? 'act-system',
    '--kube-version',
    KUBE_VERSION,
    ...(opts.values ?? []).flatMap((v) => ['-f', v]),
    ...(opts.set ?? []).flatMap((s) => ['--set', s]),
  ];
  const r = runHelm(args);
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

export function find<T = K8sObject>(objs: K8sObject[], kind: string, name?: string): T {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!o) throw new Error(`no ${kind}${name ? ` ${name}` : ''} rendered`);
  return o as T;
}

type ModelClass = new (data: any) => { validate(): void };
const MODELS: Record<string, ModelClass> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Pod': Pod,
  'apps/v1/Deployment': Deployment,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** cert-manager CRDs are not in kubernetes-models: their required fields are checked by hand. */
function validateCertManager(o: K8sObject): void {
  const spec = o.spec as Record<string, any> | undefined;
  if (o.kind === 'Issuer') {
    if (!spec || (spec.selfSigned === undefined && spec.ca === undefined))
      throw new Error('Issuer needs selfSigned or ca');
    return;
  }
  if (o.kind === 'Certificate') {
    if (
      !spec?.secretName ||
      !spec.issuerRef?.name ||
      !Array.isArray(spec.dnsNames) ||
      spec.dnsNames.length === 0
    )
      throw new Error('Certificate needs secretName, issuerRef.name and dnsNames');
    if (spec.duration !== undefined && !/^\d+h$/.test(spec.duration))
      throw new Error(`bad duration ${spec.duration}`);
    return;
  }
  throw new Error(`no schema for cert-manager.io ${o.kind}`);
}

/** Validates one object against its Kubernetes schema; throws with the schema error. */
export function validateObject(o: K8sObject): void {
  if (o.apiVersion === 'cert-manager.io/v1') return validateCertManager(o);
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(o.metadata.name))
    throw new Error(`${o.kind} name ${JSON.stringify(o.metadata.name)} is not a DNS subdomain`);
}

/** Environment variables with literal values of a container (valueFrom entries resolved by `resolve`). */
export function containerEnv(
  container: { env?: { name: string; value?: string; valueFrom?: unknown }[] },
  resolve: (name: string, valueFrom: unknown) => string | undefined = () => undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const v = e.value ?? resolve(e.name, e.valueFrom);
    if (v !== undefined) out[e.name] = v;
  }
  return out;
}
