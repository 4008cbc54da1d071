/**
 * mcp-oauth-proxy as a library. `createMcpAuthProxy` embeds the proxy in an application with
 * its own MCP tools, authorization decision and bearer-protected routes; `startServer` runs it
 * as the CLI does. Nothing here reads `process.env`: configuration is passed in.
 */

// For tools that ask the user on the 2026-07-28 era (`input_required`, see ToolExtra).
export { acceptedContent, inputRequired } from '@modelcontextprotocol/server'
export { type AppOptions, createApp } from './app.js'
export { type Clock, systemClock } from './clock.js'
export {
  type Config,
  ConfigError,
  loadConfig,
  type UpstreamKind,
  type UpstreamSettings,
} from './config.js'
export type { Deps } from './deps.js'
export { OAuthError } from './errors.js'
export { createMcpAuthProxy, type McpAuthProxy, type McpAuthProxyOptions } from './library.js'
export type { AuthEnv, RequestAuth, RequireAuthOptions } from './mcp/require-auth.js'
export type { ServerInfo } from './mcp/server.js'
export {
  type Caller,
  defineTool,
  jsonResult,
  type ToolDefinition,
  type ToolExtra,
  type ToolResult,
  toolError,
} from './mcp/tools.js'
export { type RunningServer, startServer } from './server.js'
export { createServices, type ServiceOverrides, type Services } from './services.js'
export { createMemoryStore } from './store/memory.js'
export { createRedisStore, type RedisStoreOptions } from './store/redis.js'
export type { Store } from './store/store.js'
export type { Actor } from './tokens/access-token.js'
export type { AuthorizeUser } from './tokens/policy.js'
export type { UpstreamIdentity } from './upstream/upstream.js'
