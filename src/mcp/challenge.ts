/**
 * An RFC 9110 §5.6.4 quoted-string holding `value`: backslash and double quote are escaped,
 * control characters (which could end or split the header) are dropped, and anything beyond
 * ASCII becomes `?` (a header is bytes: `Headers` refuses such values, which would turn a
 * refusal into a 500).
 */
export function quotedString(value: string): string {
  const safe = value
    // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
    .replace(/[^\u0020-\u007e]/gu, '?')
  return `"${safe.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** The attributes of a `Bearer` challenge (RFC 6750 §3, RFC 9728 §5.1). */
export interface BearerChallenge {
  /** `invalid_token`, `insufficient_scope`…; absent when the request carried no token (§3.1). */
  readonly error?: string | undefined
  readonly description?: string | undefined
  /** Where the protected-resource metadata is (RFC 9728 §5.1). */
  readonly resourceMetadata: string
  /** The scopes the resource needs (RFC 6750 §3); omitted when empty. */
  readonly scopes?: readonly string[] | undefined
}

/**
 * The `WWW-Authenticate` value for a refused request, e.g.
 * `Bearer error="invalid_token", error_description="…", resource_metadata="…", scope="a b"`.
 * Every value is a quoted-string built by `quotedString`, so no message can break the header.
 */
export function bearerChallenge(challenge: BearerChallenge): string {
  const params: [string, string][] = []
  if (challenge.error) {
    params.push(['error', challenge.error])
    if (challenge.description) params.push(['error_description', challenge.description])
  }
  params.push(['resource_metadata', challenge.resourceMetadata])
  if (challenge.scopes?.length) params.push(['scope', challenge.scopes.join(' ')])
  return `Bearer ${params.map(([name, value]) => `${name}=${quotedString(value)}`).join(', ')}`
}
