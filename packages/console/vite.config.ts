/**
 * Builds the console into dist/, served by `custody up` at `/`. @custody/core
 * resolves to its browser build (the `browser` condition of its `#sha256`,
 * `#ed25519-sign` and `#codec` imports), so bundles are verified in the browser.
 */
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  base: '/',
  resolve: { conditions: ['browser', 'module', 'import', 'default'] },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1500 },
});
