import type {
  AddClientAuthentication,
  DpopSession,
  OAuthClientMetadata,
  OAuthClientProvider,
  OAuthDiscoveryState,
  StoredOAuthClientInformation,
  StoredOAuthTokens,
} from '@modelcontextprotocol/client'
import { decodeJwt } from 'jose'

/**
 * The v2 MCP SDK's OAuth client provider as a client keeps it, with a DPoP session
 * (`dpop()`, SEP-1932) and optionally `private_key_jwt` (`addClientAuthentication`): the SDK
 * then signs proofs into token requests and presents `DPoP` tokens with per-request proofs.
 */
export class DpopClientProvider implements OAuthClientProvider {
  information: StoredOAuthClientInformation | undefined
  saved: StoredOAuthTokens | undefined
  verifier = ''
  authorizationUrls: URL[] = []
  discovery: OAuthDiscoveryState | undefined
  addClientAuthentication?: AddClientAuthentication

  constructor(
    readonly redirectUrl: string,
    readonly clientMetadata: OAuthClientMetadata,
    readonly session: DpopSession | undefined,
    options: {
      clientMetadataUrl?: string
      addClientAuthentication?: AddClientAuthentication
      information?: StoredOAuthClientInformation
    } = {},
  ) {
    if (options.clientMetadataUrl) this.clientMetadataUrl = options.clientMetadataUrl
    if (options.addClientAuthentication)
      this.addClientAuthentication = options.addClientAuthentication
    this.information = options.information
  }

  clientMetadataUrl?: string

  dpop() {
    return this.session
  }
  clientInformation() {
    return this.information
  }
  saveClientInformation(information: StoredOAuthClientInformation) {
    this.information = information
  }
  tokens() {
    return this.saved
  }
  saveTokens(tokens: StoredOAuthTokens) {
    this.saved = tokens
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrls.push(url)
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier
  }
  codeVerifier() {
    return this.verifier
  }
  saveDiscoveryState(state: OAuthDiscoveryState) {
    this.discovery = state
  }
  discoveryState() {
    return this.discovery
  }
}

/** The `cnf.jkt` an access token is bound to, if any (read, not verified). */
export function boundJkt(accessToken: string): string | undefined {
  const cnf = decodeJwt(accessToken).cnf as { jkt?: string } | undefined
  return cnf?.jkt
}
