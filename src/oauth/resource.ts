/**
 * Whether a `resource` parameter (RFC 8707 §2) names this server's MCP resource: the URL
 * exactly, with or without a trailing slash and whatever query it carries (ChatGPT sends the
 * MCP URL with query parameters; a query does not make it another server). A fragment is
 * never allowed (§2), and nothing is normalised, so no other URL slips through.
 */
export function isThisResource(value: string, resource: string): boolean {
  if (value.includes('#')) return false
  const query = value.indexOf('?')
  const base = query < 0 ? value : value.slice(0, query)
  return base.replace(/\/$/, '') === resource
}
