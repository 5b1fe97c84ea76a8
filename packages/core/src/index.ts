/**
 * @custody/core: Custody's evidence formats and offline verification.
 * No I/O; runs in Node and the browser. Every name exported here is public API.
 */
export { CustodyError, FormatError, VerificationError } from './errors.js';
export type { FormatErrorCode, VerificationErrorCode } from './errors.js';
export {
  bytesEqual,
  concatBytes,
  fromBase64,
  fromBase64url,
  fromHex,
  fromUtf8,
  toBase64,
  toBase64url,
  toHex,
  utf8,
} from './bytes.js';
export { sha256 } from './hash.js';
export { scopeExcess, scopeHolds } from './scope.js';
export { canonicalBytes, canonicalJson, parseCanonical, parseJson } from './canonical-json.js';
export type { JsonValue } from './canonical-json.js';
export {
  COMMITMENT_KEY,
  CUSTODY_ONLY_TYPES,
  DECISION_EFFECTS,
  ENVELOPE_VERSION,
  EVENT_TYPES,
  PRINCIPAL_TYPES,
  envelopeIssues,
  isCustodyOnlyType,
  isEventType,
  isSessionlessType,
  validateEnvelope,
} from './envelope.js';
export type {
  ApprovalPart,
  CredentialPart,
  DecisionEffect,
  DecisionPart,
  DelegationLink,
  Envelope,
  EventType,
  FieldIssue,
  KnownEventType,
  Principal,
  PrincipalType,
  SealPart,
  SessionRef,
  ToolPart,
  TraceContext,
  Workload,
} from './envelope.js';
export {
  DEFAULT_SENSITIVE_PATHS,
  MIN_SALT_BYTES,
  checkDisclosures,
  commitFields,
  createDisclosure,
  disclosureDigest,
  formatPointer,
  listCommitments,
  parseDisclosure,
  parsePointer,
  pooledRandomBytes,
  revealFields,
} from './commitment.js';
export type { Commitment, Disclosure, DisclosureCheck, RandomBytes } from './commitment.js';
export { redactSecrets, SECRET_PATTERNS } from './secret-redaction.js';
export type { SecretRedaction } from './secret-redaction.js';
export { decodeEntry, decodeEntryBase64, encodeEntry, entryDigest, placeEvent, prepareEvent, sealEvent } from './entry.js';
export type { EventDraft, PlaceParams, PreparedEvent, SealParams, SealedEvent } from './entry.js';
export {
  EMPTY_ROOT,
  HASH_SIZE,
  MerkleFrontier,
  consistencyProof,
  consistencyProofFromNodes,
  consistencyProofNodes,
  inclusionProof,
  inclusionProofFromNodes,
  inclusionProofNodes,
  leafHash,
  nodeHash,
  nodeKey,
  rootFromInclusionProof,
  rootFromLeafHashes,
  rootFromNodes,
  subtreeNodes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
export type { NodeId, NodeLookup, StoredNode } from './merkle.js';
export {
  ED25519_TYPE,
  MAX_NOTE_SIGNATURES,
  formatKeyId,
  generateSigner,
  noteKeyId,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  signerFromSeed,
  verifyNote,
} from './note.js';
export type { Note, NoteSignature, NoteSigner, NoteVerifier, VerifiedNote } from './note.js';
export { formatCheckpoint, parseCheckpoint, signCheckpoint, verifyCheckpoint } from './checkpoint.js';
export type { Checkpoint } from './checkpoint.js';
export { RECEIPT_HEADER, checkInclusion, formatReceipt, parseReceipt, verifyReceipt } from './receipt.js';
export type { Receipt } from './receipt.js';
export { verifySessionChain } from './session-chain.js';
export type { ChainEntry, ChainFailure, ChainReport } from './session-chain.js';
export { BUNDLE_FORMAT, createBundle, verifyBundle } from './bundle.js';
export type {
  Bundle,
  BundleRecord,
  BundleReport,
  RecordReport,
  SessionReport,
  VerificationFailure,
  VerifyBundleOptions,
} from './bundle.js';
export { MemoryLog } from './memory-log.js';
export type { LoggedEvent, MemoryLogOptions } from './memory-log.js';
