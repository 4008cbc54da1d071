// `npm run demo` will start the proxy with a built-in local identity provider once the
// sign-in flow lands (see the README's status). Until then it says so instead of pretending.
process.stdout.write(
  [
    'mcp-oauth-proxy demo: not yet.',
    'The demo (proxy + built-in local OpenID Connect provider + demo tools) arrives with the',
    'sign-in flow. Today the proxy serves discovery, JWKS and client registration:',
    '  PUBLIC_URL=http://localhost:3000 OIDC_ISSUER_URL=http://127.0.0.1:9 OIDC_CLIENT_ID=x npm run dev',
    '',
  ].join('\n'),
)
