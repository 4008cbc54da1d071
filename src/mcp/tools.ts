import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js'
import type {
  CallToolResult,
  ServerNotification,
  ServerRequest,
  ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js'
import type { InputRequiredResult } from '@modelcontextprotocol/server'
import type { z } from 'zod'
import { type Config, ConfigError } from '../config.js'
import type { Actor } from '../tokens/access-token.js'

/**
 * Who is calling, as the bearer gate verified it: `AuthInfo.extra` of every MCP request.
 * `upstreamAccessToken` is the caller's upstream (Kinde/Auth0/OIDC) token, unwrapped and
 * refreshed when it had expired; tools use it to call upstream APIs as the caller and must
 * never return it.
 */
export interface Caller {
  readonly sub: string
  readonly email: string | undefined
  readonly orgCode: string | undefined
  readonly orgId: string | undefined
  readonly permissions: readonly string[]
  readonly actor: Actor
  readonly upstreamAccessToken: string
}

/**
 * What a tool handler receives besides its arguments: the v1 SDK's request extra, plus the
 * caller, the same in both protocol eras. `era` says which one the request came in:
 * `legacy` (2025, `initialize` and sessions) or `modern` (2026-07-28, stateless). On the modern
 * path `sendRequest` throws (the era has no server-to-client requests): a tool that needs the
 * user's input returns `inputRequired(...)` from `@modelcontextprotocol/server` and finds the
 * answers in `inputResponses` when the client retries.
 */
export interface ToolExtra extends RequestHandlerExtra<ServerRequest, ServerNotification> {
  readonly authInfo: AuthInfo
  readonly caller: Caller
  readonly era: 'legacy' | 'modern'
  /** Modern era: the client's answers to the `input_required` result of an earlier round. */
  readonly inputResponses?: Readonly<Record<string, unknown>> | undefined
}

/**
 * One MCP tool (`tools/list`, `tools/call`). `inputSchema` is a zod shape: the arguments are
 * validated against it before `handler` runs, and its JSON Schema is what `tools/list`
 * advertises. `requiredScopes` are checked by the bearer gate before the call reaches the
 * server: a token lacking one gets 403 `insufficient_scope` naming them (RFC 6750 §3.1), so
 * the client can step up.
 */
export interface ToolDefinition<Shape extends z.ZodRawShape = z.ZodRawShape> {
  readonly name: string
  readonly title?: string | undefined
  readonly description: string
  readonly inputSchema?: Shape | undefined
  readonly requiredScopes?: readonly string[] | undefined
  readonly annotations?: ToolAnnotations | undefined
  handler(args: z.output<z.ZodObject<Shape>>, extra: ToolExtra): ToolResult | Promise<ToolResult>
}

/**
 * What a tool returns: a result, or (modern era only) a request for the user's input. An
 * `input_required` answer to a legacy request reaches the client as a tool error.
 */
export type ToolResult = CallToolResult | InputRequiredResult

/** Declares a tool with its handler's arguments typed from `inputSchema`. */
export function defineTool<Shape extends z.ZodRawShape>(
  tool: ToolDefinition<Shape>,
): ToolDefinition {
  return tool
}

/** A tool result of one JSON text block. */
export function jsonResult(value: unknown): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }] }
}

/** A tool-level failure (`isError`): the model sees the message, the protocol call succeeds. */
export function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true }
}

/**
 * Refuses tools whose `requiredScopes` name a scope outside `SCOPES`: no client could obtain
 * it, so the tool would refuse everyone. One line per such scope, like every config problem.
 */
export function checkToolScopes(
  config: Pick<Config, 'scopes'>,
  tools: readonly Pick<ToolDefinition, 'name' | 'requiredScopes'>[],
): void {
  const problems = tools.flatMap((tool) =>
    (tool.requiredScopes ?? [])
      .filter((scope) => !config.scopes.includes(scope))
      .map((scope) => `SCOPES: tool ${tool.name} requires ${scope}, which SCOPES does not list`),
  )
  if (problems.length) throw new ConfigError(problems)
}
