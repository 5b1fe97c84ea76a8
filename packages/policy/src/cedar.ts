/**
 * The one import of cedar-wasm (its Node.js build), and helpers to turn its
 * byte offsets into line and column.
 * @internal
 */
import { setFlagsFromString } from 'node:v8';

// V8 11.3 (Node 20) aborts the process ("Fatal error … unreachable code" in
// Deoptimizer::DoComputeBuiltinContinuation) when an optimised function into which
// TurboFan inlined a JS-to-Wasm call is lazily deoptimised while the Wasm call is on
// its stack. PolicyEngine.evaluate calls cedar-wasm on every decision and met exactly
// that after ~600 gateway calls in bench/gateway, every time; with the inlining off it
// ran clean. Set before anything calling cedar-wasm is optimised (this module is the
// one import of cedar-wasm).
setFlagsFromString('--no-turbo-inline-js-wasm-calls');

export * as cedar from '@cedar-policy/cedar-wasm/nodejs';
export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  SchemaJson,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { Type } from '@cedar-policy/cedar-wasm/nodejs';

/** A schema type with names resolved to strings. @internal */
export type CedarType = Type<string>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** 1-based line and column of a UTF-8 byte offset into `text` (Cedar reports byte offsets). @internal */
export function lineColumn(text: string, byteOffset: number): { line: number; column: number } {
  const before = decoder.decode(encoder.encode(text).subarray(0, Math.max(0, byteOffset)));
  const lines = before.split('\n');
  return { line: lines.length, column: [...lines[lines.length - 1]!].length + 1 };
}

/** The UTF-8 length of `text`. @internal */
export function byteLength(text: string): number {
  return encoder.encode(text).length;
}
