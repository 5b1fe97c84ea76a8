/** `@custody/authority/testing`: real token issuers and attack forgers for tests. */
export { createTestIssuer, hmacToken, tamperedToken, unsignedToken } from './test-issuer.js';
export type { TestIssuer } from './test-issuer.js';
export { exchangeToken, tokenExchangeForm } from './token-exchange.js';
export type { ExchangeRequest } from './token-exchange.js';
