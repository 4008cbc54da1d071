/**
 * An agent (no browser, no user) calling the proxy's MCP endpoint with its upstream
 * machine-to-machine credentials: the MCP SDK's `ClientCredentialsProvider` obtains a proxy
 * token through `client_credentials`, which the proxy forwards to Kinde/Auth0 and wraps.
 * With a Kinde org-scoped M2M application the token carries the organization (`org_code`).
 *
 *   MCP_URL=https://mcp.example.com/mcp AGENT_CLIENT_ID=… AGENT_CLIENT_SECRET=… \
 *   npx tsx examples/agent.ts
 */
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'

function required(name: string): string {
  const value = process.env[name]
  if (!value) {
    console.error(`${name} is required`)
    process.exit(1)
  }
  return value
}

const mcpUrl = new URL(required('MCP_URL'))
const provider = new ClientCredentialsProvider({
  clientId: required('AGENT_CLIENT_ID'),
  clientSecret: required('AGENT_CLIENT_SECRET'),
  clientName: 'example agent',
  // The proxy is its own authorization server, at the MCP endpoint's origin. Pinning it means
  // the credentials go nowhere else, whatever the MCP server's metadata says.
  expectedIssuer: process.env.MCP_ISSUER ?? mcpUrl.origin,
})
const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider })
const client = new Client({ name: 'example-agent', version: '1.0.0' })

await client.connect(transport)
try {
  const result = await client.callTool({ name: 'whoami', arguments: {} })
  for (const block of result.content as { type: string; text?: string }[]) {
    if (block.type === 'text') console.log(block.text)
  }
} finally {
  await client.close()
}
