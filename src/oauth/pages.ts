/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}

/**
 * Headers for every page the proxy renders: never framed (clickjacking on the consent page is
 * the classic attack), no scripts at all, forms only to the given targets. `form-action` also
 * governs the redirect after a form POST in Chromium, so it lists where Allow and Deny lead.
 * The referrer policy is `same-origin`, not `no-referrer`: under `no-referrer` browsers send
 * `Origin: null` with the consent form's own POST (Fetch, "serializing a request origin"),
 * which the consent handler must refuse as a forgery.
 */
export function pageHeaders(formTargets: readonly string[] = []): Record<string, string> {
  const formAction = ["'self'", ...formTargets].join(' ')
  return {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
  }
}

const STYLE = `
  :root { color-scheme: light dark; --fg:#1b1f24; --muted:#5b6470; --bg:#f5f6f8; --card:#fff; --line:#dfe3e8; --accent:#2456d6; }
  @media (prefers-color-scheme: dark) { :root { --fg:#e8eaed; --muted:#a0a7b1; --bg:#111418; --card:#1b1f24; --line:#2c323a; --accent:#7aa2ff; } }
  * { box-sizing: border-box; }
  body { margin:0; padding:16px 0; min-height:100vh; display:grid; place-items:center; background:var(--bg); color:var(--fg);
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  main { width:min(440px, calc(100vw - 32px)); background:var(--card); border:1px solid var(--line); border-radius:14px;
    padding:28px; box-shadow:0 8px 30px rgb(0 0 0 / .06); }
  h1 { font-size:20px; margin:0 0 4px; }
  .sub { color:var(--muted); margin:0 0 18px; }
  dl { margin:0 0 18px; display:grid; grid-template-columns:max-content 1fr; gap:6px 14px; }
  dt { color:var(--muted); }
  dd { margin:0; overflow-wrap:anywhere; }
  ul { margin:0; padding-left:18px; }
  .note { font-size:13px; color:var(--muted); border-left:3px solid var(--line); padding-left:10px; margin:0 0 20px; }
  .warn { border-left-color:#d48a00; }
  .actions { display:flex; gap:10px; justify-content:flex-end; }
  button { font:inherit; padding:9px 18px; border-radius:8px; border:1px solid var(--line); background:transparent; color:var(--fg); cursor:pointer; }
  button.primary { background:var(--accent); border-color:var(--accent); color:#fff; }
  code { font-size:13px; }
  a { color:var(--accent); }
  main.wide { width:min(880px, calc(100vw - 32px)); }
  pre { background:var(--bg); border:1px solid var(--line); border-radius:8px; padding:12px; margin:0 0 18px;
    font-size:13px; white-space:pre-wrap; overflow-wrap:anywhere; }
  .grants { list-style:none; padding:0; margin:0 0 20px; display:grid; gap:12px; }
  .grant { border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
  .grant h2 { font-size:16px; margin:0 0 8px; overflow-wrap:anywhere; }
  .grant dl { margin:0 0 12px; font-size:14px; }
  .grant .actions { justify-content:flex-start; }
  a.button { display:inline-block; padding:9px 18px; border-radius:8px; background:var(--accent); color:#fff; text-decoration:none; }
  button.danger { border-color:#c2410c; color:#c2410c; }
`

/**
 * A page in the proxy's look (a card on a quiet background, light and dark, readable on a
 * phone). `body` is HTML the caller has escaped; `wide` makes room for command lines.
 */
export function renderPage(title: string, body: string, options: { wide?: boolean } = {}): string {
  return layout(title, body, options.wide ? ' class="wide"' : '')
}

function layout(title: string, body: string, mainAttributes = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body><main${mainAttributes}>
${body}
</main></body>
</html>`
}

/** What the consent page shows about a request. */
export interface ConsentView {
  readonly clientName: string
  /** For a Client ID Metadata Document client: the verified host of its client_id URL. */
  readonly verifiedDomain?: string | undefined
  /** Whether the client registered itself (DCR): anyone can choose any name. */
  readonly selfRegistered: boolean
  /** Where the browser goes afterwards, described for a person (host, or "this computer"). */
  readonly redirectTarget: string
  readonly scopes: readonly string[]
  readonly upstreamName: string
  readonly requestId: string
  readonly csrfToken: string
}

/**
 * The consent page (MCP security best practices, "Confused Deputy"): names the client, where
 * the answer goes and what it asks for, and posts Allow or Deny with a CSRF token.
 */
export function renderConsentPage(view: ConsentView): string {
  const scopes = view.scopes.length
    ? `<ul>${view.scopes.map((s) => `<li><code>${escapeHtml(s)}</code></li>`).join('')}</ul>`
    : 'basic access'
  const origin = view.verifiedDomain
    ? `<dt>Verified domain</dt><dd>${escapeHtml(view.verifiedDomain)}</dd>`
    : ''
  const caution = view.selfRegistered
    ? `<p class="note warn">This application registered itself and its name is not verified. Allow only if you just asked it to connect.</p>`
    : ''
  return layout(
    `Allow ${view.clientName}?`,
    `<h1>Allow <span id="client-name">${escapeHtml(view.clientName)}</span> to use this MCP server?</h1>
<p class="sub">You will sign in with ${escapeHtml(view.upstreamName)} next.</p>
<dl>
  <dt>Application</dt><dd>${escapeHtml(view.clientName)}</dd>
  ${origin}
  <dt>Returns to</dt><dd id="redirect-target">${escapeHtml(view.redirectTarget)}</dd>
  <dt>Access</dt><dd id="scopes">${scopes}</dd>
</dl>
${caution}
<form method="post" action="/authorize/consent">
  <input type="hidden" name="request_id" value="${escapeHtml(view.requestId)}">
  <input type="hidden" name="csrf_token" value="${escapeHtml(view.csrfToken)}">
  <div class="actions">
    <button type="submit" name="decision" value="deny">Deny</button>
    <button type="submit" name="decision" value="allow" class="primary" autofocus>Allow</button>
  </div>
</form>`,
  )
}

/**
 * The page for errors that must not redirect: the client or its redirect URI could not be
 * trusted (RFC 6749 §4.1.2.1), or the browser's sign-in could not be matched.
 */
export function renderErrorPage(
  error: string,
  description: string,
  advice = 'Return to the application and start again.',
): string {
  return layout(
    'Sign-in error',
    `<h1>This sign-in cannot continue</h1>
<p class="sub" id="error-description">${escapeHtml(description)}</p>
<p class="note">Error: <code id="error-code">${escapeHtml(error)}</code>. ${escapeHtml(advice)}</p>`,
  )
}

/** One approved client, as the account page shows it. */
export interface GrantView {
  readonly grantId: string
  readonly clientName: string
  /** For a Client ID Metadata Document client: the verified host of its client_id URL. */
  readonly verifiedDomain?: string | undefined
  /** Where the client's answers go, described for a person. */
  readonly redirectTarget?: string | undefined
  readonly scopes: readonly string[]
  /** Seconds since the epoch. */
  readonly approvedAt: number
  readonly lastUsedAt?: number | undefined
}

/** What the account page shows. */
export interface AccountView {
  /** The signed-in person, as the upstream names them (email or name, else the subject). */
  readonly who: string
  readonly grants: readonly GrantView[]
  readonly csrfToken: string
}

const DATE_TIME = new Intl.DateTimeFormat('en-GB', {
  dateStyle: 'medium',
  timeStyle: 'short',
  timeZone: 'UTC',
})

/** A moment for a person (UTC: the page runs no script that could localise it). */
function moment(seconds: number): string {
  const date = new Date(seconds * 1000)
  return `<time datetime="${date.toISOString()}">${escapeHtml(DATE_TIME.format(date))} UTC</time>`
}

/**
 * The account page: every MCP client the signed-in person approved, each with a Revoke button,
 * and Sign out. Forms only, posting with a CSRF token; no script.
 */
export function renderAccountPage(view: AccountView): string {
  const csrf = `<input type="hidden" name="csrf_token" value="${escapeHtml(view.csrfToken)}">`
  const grants = view.grants.map((grant) => {
    const scopes = grant.scopes.filter((s) => s !== 'openid')
    const rows = [
      grant.verifiedDomain
        ? `<dt>Verified domain</dt><dd>${escapeHtml(grant.verifiedDomain)}</dd>`
        : '',
      grant.redirectTarget
        ? `<dt>Returns to</dt><dd class="redirect-target">${escapeHtml(grant.redirectTarget)}</dd>`
        : '',
      `<dt>Access</dt><dd class="scopes">${scopes.length ? scopes.map((s) => `<code>${escapeHtml(s)}</code>`).join(', ') : 'basic access'}</dd>`,
      `<dt>Approved</dt><dd>${moment(grant.approvedAt)}</dd>`,
      `<dt>Last used</dt><dd>${grant.lastUsedAt ? moment(grant.lastUsedAt) : 'never'}</dd>`,
    ]
    return `<li class="grant">
  <h2 class="client-name">${escapeHtml(grant.clientName)}</h2>
  <dl>${rows.join('')}</dl>
  <form method="post" action="/account/revoke" class="actions">
    ${csrf}
    <input type="hidden" name="grant_id" value="${escapeHtml(grant.grantId)}">
    <button type="submit" class="danger" aria-label="Revoke ${escapeHtml(grant.clientName)}">Revoke</button>
  </form>
</li>`
  })
  const list = grants.length
    ? `<ul class="grants" id="grants">${grants.join('\n')}</ul>`
    : `<p class="note" id="no-grants">No application has access to this MCP server on your behalf.</p>`
  return layout(
    'Connected applications',
    `<h1>Connected applications</h1>
<p class="sub">Signed in as <span id="who">${escapeHtml(view.who)}</span>. These applications can use this MCP server as you. Revoking one ends its access within seconds; it must ask you again to reconnect.</p>
${list}
<form method="post" action="/account/sign-out" class="actions">
  ${csrf}
  <button type="submit">Sign out</button>
</form>`,
  )
}

/** The account page before sign-in: one link to the upstream's sign-in. */
export function renderAccountSignInPage(view: {
  readonly upstreamName: string
  readonly signedOut: boolean
}): string {
  return layout(
    'Connected applications',
    `<h1>Connected applications</h1>
<p class="sub">${view.signedOut ? 'You are signed out. ' : ''}Sign in to see and revoke the applications you allowed to use this MCP server.</p>
<div class="actions"><a class="button" href="/account/sign-in">Sign in with ${escapeHtml(view.upstreamName)}</a></div>`,
  )
}

/**
 * The page for a browser over `AUTHORIZE_RATE_LIMIT` (RFC 6585 §4: 429, sent with
 * `Retry-After`): a person reads it, so it says when to try again.
 */
export function renderTooManyRequestsPage(retryAfterSeconds: number): string {
  return layout(
    'Too many requests',
    `<h1>Too many sign-in attempts</h1>
<p class="sub" id="error-description">This network sent more sign-in requests than this server accepts in a minute. Try again in ${retryAfterSeconds} seconds.</p>
<p class="note">Error: <code id="error-code">temporarily_unavailable</code>.</p>`,
  )
}
