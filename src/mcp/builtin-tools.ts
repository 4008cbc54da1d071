import { type Upstream, UpstreamError } from '../upstream/upstream.js'
import { defineTool, jsonResult, type ToolDefinition, toolError } from './tools.js'

/** `whoami`: the caller's identity as the proxy verified it — never the upstream token. */
export const whoamiTool: ToolDefinition = defineTool({
  name: 'whoami',
  title: 'Who am I',
  description:
    'Returns the identity of the signed-in caller: subject, email, organization, permissions, ' +
    'whether a user or an agent is calling, the MCP client and the granted scopes.',
  annotations: { readOnlyHint: true, openWorldHint: false },
  handler(_args, { caller, authInfo }) {
    return jsonResult({
      sub: caller.sub,
      email: caller.email,
      orgCode: caller.orgCode,
      orgId: caller.orgId,
      permissions: caller.permissions,
      actor: caller.actor,
      clientId: authInfo.clientId,
      scopes: authInfo.scopes,
    })
  },
})

/**
 * `upstream_userinfo`: calls the identity provider's userinfo endpoint with the caller's
 * unwrapped (and, when needed, refreshed) upstream token — proof that the token works upstream.
 */
export function upstreamUserinfoTool(upstream: Upstream): ToolDefinition {
  return defineTool({
    name: 'upstream_userinfo',
    title: 'Identity provider profile',
    description:
      "Fetches the caller's profile from the identity provider's userinfo endpoint, using the " +
      "caller's own upstream access token.",
    annotations: { readOnlyHint: true, openWorldHint: true },
    async handler(_args, { caller }) {
      try {
        return jsonResult(await upstream.userinfo(caller.upstreamAccessToken))
      } catch (error) {
        // Upstream error messages are written never to carry tokens or response bodies.
        if (error instanceof UpstreamError) return toolError(`userinfo failed: ${error.message}`)
        throw error
      }
    },
  })
}

/** The tools every deployment serves: `whoami`, and `upstream_userinfo` when there is an upstream. */
export function builtinTools(upstream: Upstream | undefined): ToolDefinition[] {
  return upstream ? [whoamiTool, upstreamUserinfoTool(upstream)] : [whoamiTool]
}
