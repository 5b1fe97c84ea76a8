/**
 * Log streams (docs/records.md, "Streaming"): webhook (signed CloudEvents),
 * Splunk HEC and syslog (RFC 5424 over TCP/TLS) delivery of a tenant's entries.
 */
export { STREAM_KINDS, checkStreamInput, secretFingerprint, streamView } from './stream-config.js';
export type { StreamConfig, StreamInput, StreamKind, StreamView } from './stream-config.js';
export {
  CLOUDEVENTS_CONTENT_TYPE,
  SIGNATURE_HEADER,
  SYSLOG_SD_ID,
  hecBody,
  octetFrame,
  signWebhook,
  syslogSeverity,
  toCloudEvent,
  toHecEvent,
  toSyslogMessage,
  verifyWebhook,
} from './stream-formats.js';
export type { CustodyCloudEvent, HecOptions, SyslogOptions } from './stream-formats.js';
export { deliver, hecEndpoint } from './stream-targets.js';
export type { DeliveryContext, DeliveryResult } from './stream-targets.js';
export { StreamRunner, Streams, backoffDelay } from './streams.js';
export type { AddedStream, StreamRunnerOptions } from './streams.js';
