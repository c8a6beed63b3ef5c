/** Kubernetes sidecar injection: AdmissionReview v1 types, the patch builder, the HTTPS server. */
export * from './admission';
export * from './config';
export * from './inject';
export {
  startWebhookServer,
  webhookConfigFromOptions,
  type WebhookServer,
  type WebhookServerConfig,
} from './server';
