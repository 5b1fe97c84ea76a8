import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests run against TypeScript sources; workspace packages resolve to their src.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@custody\/core$/, replacement: here('./packages/core/src/index.ts') },
      { find: /^@custody\/ledger$/, replacement: here('./packages/ledger/src/index.ts') },
      { find: /^@custody\/ledger\/testing$/, replacement: here('./packages/ledger/src/testing/index.ts') },
      { find: /^@custody\/records$/, replacement: here('./packages/records/src/index.ts') },
      { find: /^@custody\/authority$/, replacement: here('./packages/authority/src/index.ts') },
      { find: /^@custody\/authority\/testing$/, replacement: here('./packages/authority/src/testing/index.ts') },
      { find: /^@custody\/policy$/, replacement: here('./packages/policy/src/index.ts') },
      { find: /^@custody\/server$/, replacement: here('./packages/server/src/index.ts') },
      { find: /^@custody\/sdk$/, replacement: here('./packages/sdk/src/index.ts') },
      { find: /^@custody\/sdk\/spool$/, replacement: here('./packages/sdk/src/spool/index.ts') },
      { find: /^@custody\/sdk\/ai$/, replacement: here('./packages/sdk/src/integrations/ai-sdk.ts') },
      { find: /^@custody\/sdk\/openai-agents$/, replacement: here('./packages/sdk/src/integrations/openai-agents.ts') },
      { find: /^@custody\/sdk\/mcp$/, replacement: here('./packages/sdk/src/integrations/mcp-client.ts') },
      { find: /^@custody\/gateway$/, replacement: here('./packages/gateway/src/index.ts') },
      { find: /^#sha256$/, replacement: here('./packages/core/src/sha256-node.ts') },
      { find: /^#ed25519-sign$/, replacement: here('./packages/core/src/ed25519-sign-node.ts') },
      { find: /^#codec$/, replacement: here('./packages/core/src/codec-node.ts') },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    reporters: ['default', './test/summary-reporter.ts'],
    coverage: {
      provider: 'v8',
      include: ['packages/core/src/**/*.ts'],
      exclude: ['**/*.test.ts'],
    },
  },
});
