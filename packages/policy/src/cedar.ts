/**
 * The one import of cedar-wasm (its Node.js build), and helpers to turn its
 * byte offsets into line and column.
 * @internal
 */
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
