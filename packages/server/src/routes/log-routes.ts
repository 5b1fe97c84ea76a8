/**
 * The tenant log: signed checkpoints, the verifier key, receipts (inclusion
 * proofs) and consistency proofs, in the formats of docs/format.md.
 * @internal
 */
import { toBase64 } from '@custody/core';

import { ROLES, callerOf } from '../auth.js';
import { AUTHED, type RouteContext, access, errorResponses, rolesLine } from '../route-kit.js';

const TEXT = 'text/plain; charset=utf-8';
const size = (description: string) => ({ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description }) as const;
const text = (description: string) => ({ description, content: { 'text/plain': { schema: { type: 'string' } } } });

/** Registers the log routes. */
export function logRoutes(ctx: RouteContext): void {
  const { app, ledger } = ctx;
  const read = access(ctx, ROLES.read);
  const hook = read.onRequest ? { onRequest: read.onRequest } : {};

  app.get<{ Querystring: { size?: number } }>(
    '/v1/log/checkpoint',
    {
      ...hook,
      schema: {
        tags: ['log'],
        summary: 'Signed checkpoint',
        description:
          "The tenant log's latest signed checkpoint (C2SP tlog-checkpoint over a signed note, Ed25519), or with size=N a signed checkpoint of the tree at size N (at most the current size). " +
          rolesLine(ROLES.read),
        security: read.security,
        querystring: { type: 'object', additionalProperties: false, properties: { size: size('Tree size (default: the latest).') } },
        response: { 200: text('The signed note.'), ...errorResponses(AUTHED) },
      },
    },
    async (request, reply) => {
      const tenant = callerOf(request).tenant;
      const { size: n } = request.query;
      const cp = n === undefined ? await ledger.latestCheckpoint(tenant) : await ledger.checkpointAt(tenant, n);
      return reply.type(TEXT).send(cp.note);
    },
  );

  app.get(
    '/v1/log/key',
    {
      ...hook,
      schema: {
        tags: ['log'],
        summary: 'Verifier key',
        description: `The note verifier key of the tenant's log, <origin>+<key id>+<base64 key>, without a newline. Pin it: custody verify --key. ${rolesLine(ROLES.read)}`,
        security: read.security,
        response: { 200: text('The verifier key.'), ...errorResponses(AUTHED) },
      },
    },
    async (request, reply) => reply.type(TEXT).send(ledger.verifierKey(callerOf(request).tenant)),
  );

  app.get<{ Querystring: { index: number; size?: number } }>(
    '/v1/log/proof/inclusion',
    {
      ...hook,
      schema: {
        tags: ['log'],
        summary: 'Receipt (inclusion proof)',
        description:
          'The receipt of the entry at index: C2SP tlog-proof@v1 text holding the RFC 9162 inclusion proof and the signed checkpoint at size (default: the latest). ' +
          rolesLine(ROLES.read),
        security: read.security,
        querystring: {
          type: 'object',
          required: ['index'],
          additionalProperties: false,
          properties: { index: size('Zero-based leaf index.'), size: size('Tree size (default: the latest).') },
        },
        response: { 200: text('The receipt.'), ...errorResponses(AUTHED) },
      },
    },
    async (request, reply) => {
      const { index, size: n } = request.query;
      return reply.type(TEXT).send(await ledger.receipt(callerOf(request).tenant, index, n));
    },
  );

  app.get<{ Querystring: { from: number; to?: number } }>(
    '/v1/log/proof/consistency',
    {
      ...hook,
      schema: {
        tags: ['log'],
        summary: 'Consistency proof',
        description: `The RFC 9162 consistency proof from tree size from to tree size to (default: the latest), as standard base64 hashes. ${rolesLine(ROLES.read)}`,
        security: read.security,
        querystring: {
          type: 'object',
          required: ['from'],
          additionalProperties: false,
          properties: { from: size('The earlier tree size.'), to: size('The later tree size (default: the latest).') },
        },
        response: {
          200: {
            type: 'object',
            required: ['from', 'to', 'proof'],
            additionalProperties: false,
            properties: {
              from: { type: 'integer' },
              to: { type: 'integer', description: 'The later size the proof is for (the latest when to was not given).' },
              proof: { type: 'array', items: { type: 'string' }, description: 'Hashes, standard base64.' },
            },
          },
          ...errorResponses(AUTHED),
        },
      },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const { from } = request.query;
      // Pin the later size first, so that `to` names the tree the proof is for.
      const to = request.query.to ?? (await ledger.latestCheckpoint(tenant)).size;
      const proof = await ledger.consistency(tenant, from, to);
      return { from, to, proof: proof.map(toBase64) };
    },
  );
}
