import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  type ListToolsResult,
  McpError,
} from '@modelcontextprotocol/sdk/types.js'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv'
import { z } from 'zod'
import { type Caller, type ToolDefinition, toolError } from './tools.js'

/** The name and version the server reports in `initialize` (MCP lifecycle). */
export interface ServerInfo {
  readonly name: string
  readonly version: string
  readonly instructions?: string | undefined
}

/**
 * Returns a factory of MCP servers that serve `tools`. Everything that depends only on the
 * tools is built once here and shared: the `tools/list` result (JSON Schema conversion is the
 * costly part of listing), the argument validators, and the JSON Schema validator the SDK
 * would otherwise construct per server (an Ajv instance: hundreds of microseconds, against a
 * few for the rest of a server). A server is then cheap enough to build per session, or per
 * request in stateless mode.
 *
 * It is the SDK's low-level `Server` rather than `McpServer`, because `McpServer` converts
 * every tool's schema on every `tools/list`. Semantics follow the MCP spec (2025-11-25): an
 * unknown tool is a JSON-RPC error (-32602); invalid arguments and handler failures are tool
 * results with `isError`, so the model can correct itself.
 */
export function createServerFactory(
  info: ServerInfo,
  tools: readonly ToolDefinition[],
): () => Server {
  const byName = new Map<string, { tool: ToolDefinition; args: z.ZodObject }>()
  for (const tool of tools) {
    if (byName.has(tool.name)) throw new Error(`MCP tool ${tool.name} is defined twice`)
    byName.set(tool.name, { tool, args: z.object(tool.inputSchema ?? {}) })
  }
  const list: ListToolsResult = {
    tools: [...byName.values()].map(({ tool, args }) => ({
      name: tool.name,
      ...(tool.title ? { title: tool.title } : {}),
      description: tool.description,
      inputSchema: z.toJSONSchema(args, {
        io: 'input',
      }) as ListToolsResult['tools'][0]['inputSchema'],
      ...(tool.annotations ? { annotations: tool.annotations } : {}),
    })),
  }
  const jsonSchemaValidator = new AjvJsonSchemaValidator()

  return function createServer(): Server {
    const server = new Server(
      { name: info.name, version: info.version },
      { capabilities: { tools: {} }, instructions: info.instructions, jsonSchemaValidator },
    )
    server.setRequestHandler(ListToolsRequestSchema, () => list)
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const { name } = request.params
      const entry = byName.get(name)
      if (!entry) throw new McpError(ErrorCode.InvalidParams, `Tool ${name} not found`)
      const authInfo = extra.authInfo
      // The bearer gate attaches the caller to every request; without it nothing may run.
      if (!authInfo?.extra) throw new McpError(ErrorCode.InternalError, 'unauthenticated call')
      const parsed = entry.args.safeParse(request.params.arguments ?? {})
      if (!parsed.success) {
        return toolError(`Invalid arguments for tool ${name}: ${z.prettifyError(parsed.error)}`)
      }
      try {
        return await entry.tool.handler(parsed.data, {
          ...extra,
          authInfo,
          caller: callerOf(authInfo),
        })
      } catch (error) {
        return toolError(error instanceof Error ? error.message : String(error))
      }
    })
    return server
  }
}

// The bearer gate builds `AuthInfo.extra` from a `Caller` (see auth.ts).
function callerOf(authInfo: AuthInfo): Caller {
  return authInfo.extra as unknown as Caller
}
